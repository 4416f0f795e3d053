//! How a computation's output becomes a cached value: the plans of `get_or_set`,
//! `try_get_or_set` and the macros.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::flight::Shared;
use crate::typed::Typed;

/// How a computation's output relates to the cached value.
pub(crate) trait Plan {
    /// What the caller receives.
    type Output;
    /// What is stored.
    type Value: Serialize + DeserializeOwned;
    fn hit(value: Self::Value) -> Self::Output;
    fn verdict(self, output: &Self::Output) -> Verdict<'_, Self::Value>;
    /// Turns a failure shared by the leader back into an output, if this plan shares failures.
    fn failure(_shared: &Shared) -> Option<Self::Output> {
        None
    }
    /// How to keep the decoded value in process, if its type allows.
    fn typed(&self) -> Option<Typed<Self::Value>> {
        None
    }
}

/// What becomes of a freshly computed output.
pub(crate) enum Verdict<'o, V> {
    /// Cache it and hand it to the waiting callers.
    Store(&'o V),
    /// Hand it to the waiting callers without caching it.
    Share(&'o V),
    /// A failure: the waiting callers receive it if it is shared, or compute on their own.
    Fail(Option<Shared>),
}

/// The output is the value, always cached.
pub(crate) struct Whole<T>(pub(crate) PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned> Plan for Whole<T> {
    type Output = T;
    type Value = T;
    fn hit(value: T) -> T {
        value
    }
    fn verdict(self, output: &T) -> Verdict<'_, T> {
        Verdict::Store(output)
    }
}

/// `Ok` is cached; `Err` is shared with the waiting callers and not cached.
pub(crate) struct Fallible<T, E>(pub(crate) PhantomData<fn() -> (T, E)>);

impl<T, E> Plan for Fallible<T, E>
where
    T: Serialize + DeserializeOwned,
    E: Clone + Send + Sync + 'static,
{
    type Output = std::result::Result<T, E>;
    type Value = T;
    fn hit(value: T) -> Self::Output {
        Ok(value)
    }
    fn verdict(self, output: &Self::Output) -> Verdict<'_, T> {
        match output {
            Ok(value) => Verdict::Store(value),
            Err(error) => Verdict::Fail(Some(Arc::new(error.clone()))),
        }
    }
    fn failure(shared: &Shared) -> Option<Self::Output> {
        shared.downcast_ref::<E>().cloned().map(Err)
    }
}
