use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Block, LitStr};

use crate::attr::{CacheResultArgs, InvalidateCacheArgs, TtlArg};
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
    let ttl = match &args.ttl {
        TtlArg::Default => quote!(#krate::__private::Ttl::Default),
        TtlArg::Seconds(seconds) => {
            quote!(#krate::__private::Ttl::Exact(::core::time::Duration::from_secs(#seconds)))
        }
        TtlArg::Expr(ttl) => {
            quote_spanned!(ttl.span()=> ::core::convert::Into::<#krate::__private::Ttl>::into(#ttl))
        }
        TtlArg::Class(class) => quote!(#krate::__private::Ttl::#class),
    };
    let lock = args.lock;
    let stale_for = match &args.stale_for {
        Some(seconds) => quote!(::core::option::Option::Some(#seconds)),
        None => quote!(::core::option::Option::None),
    };
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
    let block = function.body();
    syn::parse2(quote! {
        {
            let __cache_site = #site;
            let __cache_body = async move #block;
            #run(__cache_site, |__cache_value: &#value| #store_if, __cache_body, #typed).await
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
