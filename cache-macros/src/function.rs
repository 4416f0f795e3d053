use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{
    Block, Expr, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Stmt,
    TraitItemFn, Type, TypeParamBound,
};

use crate::error::{Errors, did_you_mean, listed};
use crate::key::KeyTemplate;

/// The function a macro rewrites: an `async fn`, or one already rewritten by `async_trait`.
pub(crate) struct Function {
    pub(crate) item: ItemFn,
    pub(crate) output: Option<Type>,
    async_trait: bool,
    params: Vec<Ident>,
    receiver: bool,
}

/// What a batch function returns (see [`Function::batch_output`]).
pub(crate) struct BatchOutput<'a> {
    pub(crate) fallible: bool,
    pub(crate) collection: &'a Type,
    pub(crate) outer: String,
    pub(crate) inner: Option<String>,
}

/// What a function returns, as far as caching is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Plain,
    Option,
    Result,
}

impl Function {
    pub(crate) fn parse(item: TokenStream, attribute: &str) -> syn::Result<Function> {
        let item: ItemFn = match syn::parse2(item.clone()) {
            Ok(item) => item,
            Err(_) => return Err(not_a_function(item, attribute)),
        };
        let async_trait = item.sig.asyncness.is_none() && async_trait_output(&item).is_some();
        if item.sig.asyncness.is_none() && !async_trait {
            return Err(syn::Error::new_spanned(
                item.sig.fn_token,
                format!(
                    "`#[{attribute}]` needs an `async fn`: the cache is read and written asynchronously"
                ),
            ));
        }
        let output = match async_trait {
            true => async_trait_output(&item).cloned(),
            false => match &item.sig.output {
                ReturnType::Default => None,
                ReturnType::Type(_, ty) => Some((**ty).clone()),
            },
        };
        let params = item
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(pat) => Some(pat.ident.clone()),
                    _ => None,
                },
                FnArg::Receiver(_) => None,
            })
            .collect();
        let receiver = item.sig.receiver().is_some();
        Ok(Function {
            item,
            output,
            async_trait,
            params,
            receiver,
        })
    }

    pub(crate) fn name(&self) -> &Ident {
        &self.item.sig.ident
    }

    /// The receiver, when the method takes `self` by value.
    pub(crate) fn self_by_value(&self) -> Option<&syn::Receiver> {
        self.item
            .sig
            .receiver()
            .filter(|receiver| receiver.reference.is_none() && receiver.colon_token.is_none())
    }

    /// With early refresh the body runs after the call returned, as its own task: it may
    /// not borrow. Reports each borrowed receiver or argument the body uses (an argument
    /// used only for the key or the cache is not captured).
    pub(crate) fn check_owned_arguments(&self, errors: &mut Errors) {
        let why = "`early_refresh = true` may run the body after the call returned, as its own task, so it cannot borrow";
        let body = self.body().to_token_stream();
        for input in &self.item.sig.inputs {
            match input {
                FnArg::Receiver(receiver)
                    if (receiver.reference.is_some() || borrows(&receiver.ty))
                        && mentions(body.clone(), "self") =>
                {
                    errors.spanned(
                        receiver,
                        format!(
                            "{why}: the body uses `self`, which is borrowed; take `self: Arc<Self>`, or cache a function of owned values"
                        ),
                    );
                }
                FnArg::Typed(typed) if borrows(&typed.ty) => {
                    let Pat::Ident(pat) = &*typed.pat else {
                        continue;
                    };
                    if mentions(body.clone(), &pat.ident.to_string()) {
                        errors.spanned(
                            &typed.ty,
                            format!(
                                "{why}: the body uses `{}`, which is borrowed; take it by value (a `String`, an `Arc<T>`)",
                                pat.ident
                            ),
                        );
                    }
                }
                FnArg::Receiver(_) | FnArg::Typed(_) => {}
            }
        }
    }

    /// The type of the parameter `name`, if the function has one.
    pub(crate) fn param_type(&self, name: &Ident) -> Option<&Type> {
        self.typed_params()
            .find(|(ident, _)| *ident == name)
            .map(|(_, ty)| ty)
    }

    /// The parameters other than `except` that the body uses, with their types.
    pub(crate) fn used_params_except(&self, except: &Ident) -> Vec<(&Ident, &Type)> {
        let body = self.body().to_token_stream();
        self.typed_params()
            .filter(|(ident, _)| *ident != except && mentions(body.clone(), &ident.to_string()))
            .collect()
    }

    fn typed_params(&self) -> impl Iterator<Item = (&Ident, &Type)> {
        self.item.sig.inputs.iter().filter_map(|input| match input {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) => Some((&pat.ident, &*typed.ty)),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
    }

    /// The receiver, when the method takes `&mut self`.
    pub(crate) fn self_by_mut(&self) -> Option<&syn::Receiver> {
        self.item
            .sig
            .receiver()
            .filter(|receiver| receiver.mutability.is_some() && receiver.reference.is_some())
    }

    /// What a batch function returns: whether it is a `Result`, the collection (inside the
    /// `Result`), and the collection's last segment with its first type argument's (a
    /// `Vec<Option<User>>`: `Vec` and `Option`).
    pub(crate) fn batch_output(&self) -> Option<BatchOutput<'_>> {
        let output = self.output.as_ref()?;
        let (fallible, collection) = match segment_and_argument(output) {
            Some((name, Some(inner))) if name == "Result" => (true, inner),
            _ => (false, output),
        };
        let (outer, argument) = segment_and_argument(collection)?;
        let inner =
            argument.and_then(|argument| segment_and_argument(argument).map(|(name, _)| name));
        Some(BatchOutput {
            fallible,
            collection,
            outer,
            inner,
        })
    }

    pub(crate) fn shape(&self) -> Shape {
        match self.output.as_ref().and_then(last_segment) {
            Some(name) if name == "Result" => Shape::Result,
            Some(name) if name == "Option" => Shape::Option,
            _ => Shape::Plain,
        }
    }

    /// Why the return type cannot be cached, if it cannot.
    pub(crate) fn uncacheable_output(&self) -> Option<syn::Error> {
        match &self.output {
            None => Some(syn::Error::new_spanned(
                &self.item.sig,
                format!("nothing to cache: `{}` returns `()`", self.name()),
            )),
            Some(Type::Tuple(tuple)) if tuple.elems.is_empty() => Some(syn::Error::new_spanned(
                tuple,
                format!("nothing to cache: `{}` returns `()`", self.name()),
            )),
            Some(ty) if contains_impl_trait(ty) => Some(syn::Error::new_spanned(
                ty,
                "a cached function needs a concrete return type that can be deserialized, not `impl Trait`",
            )),
            _ => None,
        }
    }

    /// Checks that every placeholder names a parameter (or `self` in a method), and that
    /// `key_args`, when given, lists exactly the parameters the templates use.
    pub(crate) fn check_templates(
        &self,
        templates: &[&KeyTemplate],
        key_args: Option<&crate::attr::KeyArgs>,
        errors: &mut Errors,
    ) {
        self.check_templates_with(templates, key_args, None, errors);
    }

    /// [`check_templates`](Function::check_templates), where `extra` (a batch's id) is a
    /// name placeholders may use too.
    pub(crate) fn check_templates_with(
        &self,
        templates: &[&KeyTemplate],
        key_args: Option<&crate::attr::KeyArgs>,
        extra: Option<&Ident>,
        errors: &mut Errors,
    ) {
        let mut names: Vec<String> = self.params.iter().map(Ident::to_string).collect();
        names.extend(extra.map(Ident::to_string));
        let known = || {
            names
                .iter()
                .map(String::as_str)
                .chain(self.receiver.then_some("self"))
        };
        for template in templates {
            for placeholder in template.placeholders() {
                if placeholder.root == "self" && !self.receiver {
                    errors.spanned(
                        &template.lit,
                        format!(
                            "`{}` uses `self`, but `{}` is not a method taking `self`",
                            placeholder.written(),
                            self.name()
                        ),
                    );
                } else if !known().any(|name| name == placeholder.root) {
                    errors.spanned(
                        &template.lit,
                        format!(
                            "`{}` names no parameter of `{}`{}; the parameters are {}",
                            placeholder.written(),
                            self.name(),
                            did_you_mean(&placeholder.root, known()),
                            parameter_list(known()),
                        ),
                    );
                }
            }
        }
        let Some(key_args) = key_args else {
            return;
        };
        let used = |name: &str| {
            templates
                .iter()
                .flat_map(|t| t.placeholders())
                .any(|p| p.root == name)
        };
        for lit in &key_args.names {
            let name = lit.value();
            if !known().any(|known| known == name) {
                errors.spanned(
                    lit,
                    format!(
                        "`key_args` names `{name}`, which is no parameter of `{}`{}; the parameters are {}",
                        self.name(),
                        did_you_mean(&name, known()),
                        parameter_list(known()),
                    ),
                );
            } else if !used(&name) {
                errors.spanned(
                    lit,
                    format!("`key_args` lists `{name}`, but no template uses `{{{name}}}`"),
                );
            }
        }
        let misnamed = key_args
            .names
            .iter()
            .any(|lit| !known().any(|known| known == lit.value()));
        for template in templates.iter().filter(|_| !misnamed) {
            for placeholder in template.placeholders() {
                let listed = key_args
                    .names
                    .iter()
                    .any(|lit| lit.value() == placeholder.root);
                if placeholder.root != "self"
                    && known().any(|name| name == placeholder.root)
                    && !listed
                {
                    errors.spanned(
                        &template.lit,
                        format!(
                            "`{}` is in the template but `{}` is missing from `key_args`",
                            placeholder.written(),
                            placeholder.root
                        ),
                    );
                }
            }
        }
    }

    /// The block to wrap: the function's body, or the future `async_trait` boxes.
    pub(crate) fn body(&self) -> &Block {
        match boxed_future(&self.item.block) {
            Some(inner) if self.async_trait => inner,
            _ => &self.item.block,
        }
    }

    pub(crate) fn replace_body(&mut self, block: Block) {
        let async_trait = self.async_trait;
        match boxed_future_mut(&mut self.item.block) {
            Some(inner) if async_trait => *inner = block,
            _ => *self.item.block = block,
        }
    }
}

fn parameter_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.is_empty() {
        true => "none".into(),
        false => listed(names),
    }
}

fn not_a_function(item: TokenStream, attribute: &str) -> syn::Error {
    if let Ok(declaration) = syn::parse2::<TraitItemFn>(item.clone())
        && declaration.default.is_none()
    {
        return syn::Error::new_spanned(
            declaration.sig,
            format!(
                "`#[{attribute}]` needs a function body: put it on the method in the `impl` block"
            ),
        );
    }
    syn::Error::new(
        item.span(),
        format!("`#[{attribute}]` applies to async functions and methods"),
    )
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            matches!(segment.arguments, PathArguments::AngleBracketed(_))
                .then(|| segment.ident.to_string())
        }
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// Whether a type is a reference or names a lifetime other than `'static`.
fn borrows(ty: &Type) -> bool {
    matches!(ty, Type::Reference(_)) || names_a_lifetime(ty.to_token_stream())
}

/// Whether `name` appears in `tokens`: as an identifier, or captured by a format string
/// (`"{name}"`, `"{name:?}"`).
fn mentions(tokens: TokenStream, name: &str) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == name,
        proc_macro2::TokenTree::Group(group) => mentions(group.stream(), name),
        proc_macro2::TokenTree::Literal(literal) => {
            let text = literal.to_string();
            text.contains(&format!("{{{name}}}")) || text.contains(&format!("{{{name}:"))
        }
        proc_macro2::TokenTree::Punct(_) => false,
    })
}

pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) => true,
        Type::Group(group) => contains_impl_trait(&group.elem),
        Type::Paren(paren) => contains_impl_trait(&paren.elem),
        Type::Reference(reference) => contains_impl_trait(&reference.elem),
        Type::Tuple(tuple) => tuple.elems.iter().any(contains_impl_trait),
        Type::Array(array) => contains_impl_trait(&array.elem),
        Type::Slice(slice) => contains_impl_trait(&slice.elem),
        Type::Path(path) => path
            .path
            .segments
            .iter()
            .any(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().any(|arg| match arg {
                    GenericArgument::Type(ty) => contains_impl_trait(ty),
                    _ => false,
                }),
                _ => false,
            }),
        _ => false,
    }
}

/// `R` in `-> Pin<Box<dyn Future<Output = R> + Send + 'async_trait>>`, when the body is
/// `Box::pin(async move { .. })`: the shape `async_trait` gives a method.
fn async_trait_output(item: &ItemFn) -> Option<&Type> {
    let ReturnType::Type(_, ty) = &item.sig.output else {
        return None;
    };
    let pinned = single_type_argument(ty, "Pin")?;
    let Type::TraitObject(object) = single_type_argument(pinned, "Box")? else {
        return None;
    };
    let future = object.bounds.iter().find_map(|bound| match bound {
        TypeParamBound::Trait(bound) => bound
            .path
            .segments
            .last()
            .filter(|segment| segment.ident == "Future"),
        _ => None,
    })?;
    let PathArguments::AngleBracketed(args) = &future.arguments else {
        return None;
    };
    let output = args.args.iter().find_map(|arg| match arg {
        GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
        _ => None,
    })?;
    boxed_future(&item.block).map(|_| output)
}

fn single_type_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let segment = path
        .path
        .segments
        .last()
        .filter(|segment| segment.ident == name)?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// The block of `async move { .. }` when the body ends in `Box::pin(async move { .. })`.
fn boxed_future(block: &Block) -> Option<&Block> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    if func
        .path
        .segments
        .last()
        .is_none_or(|segment| segment.ident != "pin")
        || call.args.len() != 1
    {
        return None;
    }
    match call.args.first() {
        Some(Expr::Async(future)) => Some(&future.block),
        _ => None,
    }
}

fn boxed_future_mut(block: &mut Block) -> Option<&mut Block> {
    boxed_future(block)?;
    match block.stmts.last_mut() {
        Some(Stmt::Expr(Expr::Call(call), None)) => match call.args.first_mut() {
            Some(Expr::Async(future)) => Some(&mut future.block),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a type names a lifetime other than `'static` (`'_` included).
pub(crate) fn names_a_lifetime(tokens: TokenStream) -> bool {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Punct(punct)
                if punct.as_char() == '\''
                    && !matches!(tokens.peek(), Some(TokenTree::Ident(name)) if name == "static") =>
            {
                return true;
            }
            TokenTree::Group(group) if names_a_lifetime(group.stream()) => return true,
            _ => {}
        }
    }
    false
}

/// A path type's last segment and its first type argument.
fn segment_and_argument(ty: &Type) -> Option<(String, Option<&Type>)> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            let argument = match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                    GenericArgument::Type(ty) => Some(ty),
                    _ => None,
                }),
                _ => None,
            };
            Some((segment.ident.to_string(), argument))
        }
        Type::Group(group) => segment_and_argument(&group.elem),
        Type::Paren(paren) => segment_and_argument(&paren.elem),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::names_a_lifetime;
    use quote::quote;

    #[test]
    fn lifetimes_other_than_static_are_found() {
        assert!(!names_a_lifetime(quote!(Vec<String>)));
        assert!(!names_a_lifetime(quote!(Result<Cow<'static, str>, E>)));
        assert!(!names_a_lifetime(quote!(&'static str)));
        assert!(names_a_lifetime(quote!(Cow<'a, str>)));
        assert!(names_a_lifetime(quote!(Result<Vec<(u8, Cow<'_, str>)>, E>)));
    }
}
