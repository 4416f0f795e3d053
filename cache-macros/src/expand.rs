use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Block, LitStr};

use crate::attr::{BatchArg, CacheResultArgs, InvalidateCacheArgs, TtlArg};
use crate::error::{Errors, with_item};
use crate::function::{Function, Shape, contains_impl_trait};
use crate::key::KeyTemplate;

pub(crate) fn cache_result(args: TokenStream, item: TokenStream) -> TokenStream {
    rewrite(args, item, "cache_result", cache_result_body)
}

pub(crate) fn invalidate_cache(args: TokenStream, item: TokenStream) -> TokenStream {
    rewrite(args, item, "invalidate_cache", invalidate_cache_body)
}

fn rewrite<A: syn::parse::Parse>(
    args: TokenStream,
    item: TokenStream,
    attribute: &str,
    body: fn(&A, &Function) -> syn::Result<Block>,
) -> TokenStream {
    let parsed = (
        syn::parse2::<A>(args),
        Function::parse(item.clone(), attribute),
    );
    let rewritten = match parsed {
        (Ok(args), Ok(mut function)) => body(&args, &function).map(|block| {
            function.replace_body(block);
            function.item.into_token_stream()
        }),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            Err(error)
        }
        (Err(error), _) | (_, Err(error)) => Err(error),
    };
    rewritten.unwrap_or_else(|error| with_item(item, error))
}

fn runtime(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path),
        None => quote!(::cachemere),
    }
}

fn handle(krate: &TokenStream, cache: Option<&syn::Expr>, function: &Function) -> TokenStream {
    match cache {
        Some(cache) => quote_spanned!(cache.span()=> #krate::__private::explicit(&(#cache))),
        None => {
            let name = LitStr::new(&function.name().to_string(), function.name().span());
            quote!(#krate::__private::global(#name))
        }
    }
}

fn strings(krate: &TokenStream, templates: &[&KeyTemplate]) -> TokenStream {
    let values = templates
        .iter()
        .map(|template| template.to_string_expr(krate));
    quote!(#krate::__private::vec![#(#values),*])
}

fn no_stars(templates: &[KeyTemplate], what: &str, errors: &mut Errors) {
    for template in templates.iter().filter(|template| template.is_pattern()) {
        errors.spanned(
            &template.lit,
            format!("`*` has no meaning in {what}: they are exact names, not patterns"),
        );
    }
}

fn cache_result_body(args: &CacheResultArgs, function: &Function) -> syn::Result<Block> {
    if let Some(batch) = &args.batch {
        return batch_body(args, batch, function);
    }
    let mut errors = Errors::default();
    function.check_templates(&[&args.template], args.key_args.as_ref(), &mut errors);
    function.check_templates(&args.tags.iter().collect::<Vec<_>>(), None, &mut errors);
    if args.template.is_pattern() {
        errors.spanned(
            &args.template.lit,
            "a `#[cache_result]` key cannot contain `*`: `*` makes a pattern, which `#[invalidate_cache]` takes",
        );
    }
    no_stars(&args.tags, "tags", &mut errors);
    if let Some(receiver) = function.self_by_value() {
        errors.spanned(
            receiver,
            "`#[cache_result]` cannot take `self` by value: a cache hit would drop it unused; take `&self` or `&mut self`",
        );
    }
    if let Some(error) = function.uncacheable_output() {
        errors.push(error);
    }
    if args.early_refresh.is_some() {
        function.check_owned_arguments(&mut errors);
    }
    let shape = function.shape();
    if let Some(cache_none) = &args.cache_none
        && shape != Shape::Option
    {
        errors.spanned(
            cache_none,
            format!(
                "`cache_none` applies to functions returning `Option<T>`, and `{}` does not",
                function.name()
            ),
        );
    }
    errors.finish()?;
    let Some(output) = function.output.clone() else {
        return Err(syn::Error::new_spanned(
            &function.item.sig,
            "nothing to cache",
        ));
    };

    let krate = runtime(args.krate.as_ref());
    let handle = handle(&krate, args.cache.as_ref(), function);
    let key = args.template.to_string_expr(&krate);
    let tags = strings(&krate, &args.tags.iter().collect::<Vec<_>>());
    let ttl = ttl(args, &krate);
    let lock = args.lock;
    let stale_for = stale_for(args);
    let early = args.early_refresh.map(|beta| quote!(.early_refresh(#beta)));
    let site = quote! {
        match #handle {
            ::core::option::Option::Some(__cache_cache) => ::core::option::Option::Some(
                #krate::__private::Site::new(__cache_cache, #key, #ttl, #lock, #tags, #stale_for)#early,
            ),
            ::core::option::Option::None => ::core::option::Option::None,
        }
    };
    let site = match &args.condition {
        Some(condition) => quote!(if #condition { #site } else { ::core::option::Option::None }),
        None => site,
    };
    let cache_none = args.cache_none.as_ref().is_some_and(|lit| lit.value);
    let mut approvals = Vec::new();
    if shape == Shape::Option && !cache_none {
        approvals.push(quote!(::core::option::Option::is_some(__cache_value)));
    }
    if let Some(unless) = &args.unless {
        approvals.push(
            quote_spanned!(unless.span()=> !#krate::__private::unless(__cache_value, #unless)),
        );
    }
    let store_if = match approvals.is_empty() {
        true => quote!(true),
        false => quote!(#(#approvals)&&*),
    };
    // With early refresh the body may run as its own task, after the call returned.
    let (cached, cached_result) = match args.early_refresh {
        Some(_) => (quote!(cached_early), quote!(cached_result_early)),
        None => (quote!(cached), quote!(cached_result)),
    };
    let (run, value) = match shape {
        Shape::Result => (
            quote_spanned!(output.span()=> #krate::__private::#cached_result::<#output, _, _>),
            quote_spanned!(output.span()=> <#output as #krate::__private::Fallible>::Ok),
        ),
        Shape::Plain | Shape::Option => (
            quote_spanned!(output.span()=> #krate::__private::#cached::<#output, _, _>),
            quote!(#output),
        ),
    };
    // Whether in-process hits may copy a decoded value is decided by the value's type, at
    // compile time (autoref specialisation: `Clone + Send + Sync + 'static` types are kept).
    // A type naming a lifetime other than `'static` is never kept: the `'static` bound would
    // be a borrow error rather than a fallback.
    let typed = match crate::function::names_a_lifetime(output.to_token_stream()) {
        true => quote!(::core::option::Option::None),
        false => quote!({
            use #krate::__private::{DecodeEachTime as _, KeepDecoded as _};
            (&#krate::__private::Probe::<#value>::new()).typed()
        }),
    };
    // A hit of the in-process stages returns before the body's future or the cache's are built.
    let hit = match shape {
        Shape::Result => {
            quote_spanned!(output.span()=> <#output as #krate::__private::Fallible>::from_ok)
        }
        Shape::Plain | Shape::Option => quote!(::core::convert::identity),
    };
    let answer = quote_spanned!(output.span()=> #krate::__private::answer::<#value, #output>);
    let block = function.body();
    syn::parse2(quote! {
        {
            let __cache_site = #site;
            let __cache_typed = #typed;
            let __cache_pending = match #answer(&__cache_site, __cache_typed, #hit) {
                #krate::__private::Answered::Hit(__cache_hit) => return __cache_hit,
                #krate::__private::Answered::Pending(__cache_pending) => __cache_pending,
            };
            let __cache_body = async move #block;
            #run(
                __cache_site,
                __cache_pending,
                |__cache_value: &#value| #store_if,
                __cache_body,
                __cache_typed,
            )
            .await
        }
    })
}

fn ttl(args: &CacheResultArgs, krate: &TokenStream) -> TokenStream {
    match &args.ttl {
        TtlArg::Default => quote!(#krate::__private::Ttl::Default),
        TtlArg::Seconds(seconds) => {
            quote!(#krate::__private::Ttl::Exact(::core::time::Duration::from_secs(#seconds)))
        }
        TtlArg::Expr(ttl) => {
            quote_spanned!(ttl.span()=> ::core::convert::Into::<#krate::__private::Ttl>::into(#ttl))
        }
        TtlArg::Class(class) => quote!(#krate::__private::Ttl::#class),
    }
}

fn stale_for(args: &CacheResultArgs) -> TokenStream {
    match &args.stale_for {
        Some(seconds) => quote!(::core::option::Option::Some(#seconds)),
        None => quote!(::core::option::Option::None),
    }
}

/// `#[cache_result("user:{id}", batch(id in ids))]`: the body loads the ids that are not
/// cached, through `get_or_set_multi`.
fn batch_body(args: &CacheResultArgs, batch: &BatchArg, function: &Function) -> syn::Result<Block> {
    let mut errors = Errors::default();
    let BatchArg { name, each, ids } = batch;
    let ids_ty = function.param_type(ids);
    if ids_ty.is_none() {
        errors.spanned(
            ids,
            format!(
                "`batch({each} in {ids})`: `{ids}` names no parameter of `{}`; name the parameter that holds the ids",
                function.name()
            ),
        );
    }
    if function.param_type(each).is_some() {
        errors.spanned(
            each,
            format!(
                "`{each}` is a parameter of `{}`: give the batch's id another name",
                function.name()
            ),
        );
    }
    function.check_templates_with(
        &[&args.template],
        args.key_args.as_ref(),
        Some(each),
        &mut errors,
    );
    function.check_templates(&args.tags.iter().collect::<Vec<_>>(), None, &mut errors);
    if args.template.is_pattern() {
        errors.spanned(
            &args.template.lit,
            "a `#[cache_result]` key cannot contain `*`",
        );
    }
    if !args
        .template
        .placeholders()
        .any(|placeholder| *each == placeholder.root)
    {
        errors.spanned(
            &args.template.lit,
            format!("a batch key must use `{{{each}}}`: without it every id would share one key"),
        );
    }
    no_stars(&args.tags, "tags", &mut errors);
    let unsupported = [
        ("early_refresh", args.early_refresh.is_some()),
        ("lock", args.lock),
        ("cache_none", args.cache_none.is_some()),
        ("unless", args.unless.is_some()),
    ];
    for (option, given) in unsupported {
        if given {
            errors.spanned(
                name,
                format!("`{option}` is not supported with `batch(..)`: a batch caches what its body returns for each id"),
            );
        }
    }
    if let Some(receiver) = function.self_by_value().or(function.self_by_mut()) {
        errors.spanned(
            receiver,
            "a batch function may run its body twice (for ids another caller gave up on): take `&self`",
        );
    }
    let shape = function.batch_output();
    let aligned = match &shape {
        Some(out) if out.outer == "Vec" && out.inner.as_deref() == Some("Option") => true,
        Some(out) if out.outer == "Vec" => {
            errors.spanned(
                out.collection,
                "a batch function returning a `Vec` returns `Vec<Option<V>>`: one entry per id, in order",
            );
            false
        }
        Some(out) if out.outer == "Option" || out.outer == "Result" => {
            errors.spanned(
                out.collection,
                format!("a batch function returns a map of id to value (`HashMap<Id, V>`, `BTreeMap`, ..) or a `Vec<Option<V>>` aligned with the ids (or a `Result` of one), not `{}`", out.outer),
            );
            false
        }
        Some(_) => false,
        None => {
            errors.spanned(
                &function.item.sig,
                "a batch function returns a map of id to value (`HashMap<Id, V>`, `BTreeMap`, ..) or a `Vec<Option<V>>` aligned with the ids",
            );
            false
        }
    };
    let fallible = shape.is_some_and(|out| out.fallible);
    errors.finish()?;
    let Some(ids_ty) = ids_ty else {
        return Err(syn::Error::new_spanned(ids, "no such parameter"));
    };

    let krate = runtime(args.krate.as_ref());
    let handle = handle(&krate, args.cache.as_ref(), function);
    let key = args.template.to_string_expr(&krate);
    let tags = strings(&krate, &args.tags.iter().collect::<Vec<_>>());
    let ttl = ttl(args, &krate);
    let stale_for = stale_for(args);
    let site = quote! {
        match #handle {
            ::core::option::Option::Some(__cache_cache) => ::core::option::Option::Some(
                #krate::__private::BatchSite::new(__cache_cache, #ttl, #tags, #stale_for),
            ),
            ::core::option::Option::None => ::core::option::Option::None,
        }
    };
    let site = match &args.condition {
        Some(condition) => quote!(if #condition { #site } else { ::core::option::Option::None }),
        None => site,
    };
    // The body may run for a second batch: the parameters it uses are copied into it.
    let copies = function
        .used_params_except(ids)
        .into_iter()
        .map(|(ident, ty)| quote_spanned!(ty.span()=> #krate::__private::copied(&#ident);));
    let runner = match (aligned, fallible) {
        (true, false) => quote!(cached_aligned),
        (false, false) => quote!(cached_map),
        (true, true) => quote!(cached_aligned_result),
        (false, true) => quote!(cached_map_result),
    };
    let block = function.body();
    syn::parse2(quote! {
        {
            let __cache_site = #site;
            #(#copies)*
            let __cache_ids: ::std::vec::Vec<_> =
                ::core::iter::Iterator::collect(::core::iter::IntoIterator::into_iter(#ids));
            let __cache_body = move |__cache_missing: ::std::vec::Vec<_>| {
                #[allow(unused_mut)]
                let mut #ids: #ids_ty = ::core::iter::FromIterator::from_iter(__cache_missing);
                async move #block
            };
            #krate::__private::#runner(__cache_site, __cache_ids, |#each: &_| #key, __cache_body).await
        }
    })
}

fn invalidate_cache_body(args: &InvalidateCacheArgs, function: &Function) -> syn::Result<Block> {
    let mut errors = Errors::default();
    function.check_templates(
        &args.templates.iter().collect::<Vec<_>>(),
        args.key_args.as_ref(),
        &mut errors,
    );
    function.check_templates(&args.tags.iter().collect::<Vec<_>>(), None, &mut errors);
    no_stars(&args.tags, "tags", &mut errors);
    errors.finish()?;

    let krate = runtime(args.krate.as_ref());
    let handle = handle(&krate, args.cache.as_ref(), function);
    let (patterns, keys): (Vec<&KeyTemplate>, Vec<&KeyTemplate>) = args
        .templates
        .iter()
        .partition(|template| template.is_pattern());
    let keys = strings(&krate, &keys);
    let patterns = strings(&krate, &patterns);
    let tags = strings(&krate, &args.tags.iter().collect::<Vec<_>>());
    let site = quote! {
        match #handle {
            ::core::option::Option::Some(__cache_cache) => ::core::option::Option::Some(
                #krate::__private::Invalidation::new(__cache_cache, #keys, #patterns, #tags),
            ),
            ::core::option::Option::None => ::core::option::Option::None,
        }
    };
    let block = function.body();
    if args.before {
        return syn::parse2(quote! {
            {
                #krate::__private::invalidate(#site).await;
                #block
            }
        });
    }
    let annotation = match &function.output {
        None => quote!(: ()),
        Some(output) if !contains_impl_trait(output) => quote!(: #output),
        Some(_) => quote!(),
    };
    let invalidate = quote!(#krate::__private::invalidate(__cache_site).await;);
    let invalidate = match function.shape() {
        Shape::Result => quote!(if #krate::__private::succeeded(&__cache_output) { #invalidate }),
        Shape::Plain | Shape::Option => invalidate,
    };
    syn::parse2(quote! {
        {
            let __cache_site = #site;
            let __cache_output #annotation = async move #block.await;
            #invalidate
            __cache_output
        }
    })
}
