use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitBool, LitInt, LitStr, Token};

use crate::error::{Errors, did_you_mean, listed};
use crate::key::KeyTemplate;

const CACHE_RESULT_OPTIONS: &[&str] = &[
    "expire",
    "ttl",
    "class",
    "cache",
    "tags",
    "condition",
    "unless",
    "cache_none",
    "lock",
    "stale_for",
    "early_refresh",
    "beta",
    "key_args",
    "crate",
    "batch",
];

const INVALIDATE_CACHE_OPTIONS: &[&str] = &["tags", "cache", "before", "key_args", "crate"];

const TTL_OPTIONS: &[&str] = &["expire", "ttl", "class"];

/// The arguments of `#[cache_result(..)]`.
pub(crate) struct CacheResultArgs {
    pub(crate) template: KeyTemplate,
    pub(crate) ttl: TtlArg,
    pub(crate) cache: Option<Expr>,
    pub(crate) tags: Vec<KeyTemplate>,
    pub(crate) condition: Option<Expr>,
    pub(crate) unless: Option<Expr>,
    pub(crate) cache_none: Option<LitBool>,
    pub(crate) lock: bool,
    pub(crate) stale_for: Option<LitInt>,
    /// `early_refresh = true`: its `beta`.
    pub(crate) early_refresh: Option<f64>,
    pub(crate) key_args: Option<KeyArgs>,
    pub(crate) krate: Option<syn::Path>,
    pub(crate) batch: Option<BatchArg>,
}

/// `batch(id in ids)`: the function loads many ids at once; `ids` is the parameter holding
/// them and `id` names one of them in the key template.
pub(crate) struct BatchArg {
    pub(crate) name: Ident,
    pub(crate) each: Ident,
    pub(crate) ids: Ident,
}

/// How long a cached value lives.
pub(crate) enum TtlArg {
    Default,
    Seconds(LitInt),
    Expr(Expr),
    Class(Ident),
}

/// The arguments of `#[invalidate_cache(..)]`.
pub(crate) struct InvalidateCacheArgs {
    pub(crate) templates: Vec<KeyTemplate>,
    pub(crate) tags: Vec<KeyTemplate>,
    pub(crate) cache: Option<Expr>,
    pub(crate) before: bool,
    pub(crate) key_args: Option<KeyArgs>,
    pub(crate) krate: Option<syn::Path>,
}

/// `key_args = ["user_id", ..]`, the seed's spelling of the parameters a key uses.
pub(crate) struct KeyArgs {
    pub(crate) names: Vec<LitStr>,
}

/// One argument as written: a positional template or `name = value`.
enum RawArg {
    Positional(Expr),
    Named { name: Ident, value: Expr },
    Batch(BatchArg),
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<RawArg> {
        let fork = input.fork();
        if fork
            .call(Ident::parse_any)
            .is_ok_and(|name| name == "batch")
            && fork.peek(syn::token::Paren)
        {
            let name = input.call(Ident::parse_any)?;
            let content;
            syn::parenthesized!(content in input);
            let each: Ident = content.parse().map_err(|_| batch_form(&name))?;
            content
                .parse::<Token![in]>()
                .map_err(|_| batch_form(&name))?;
            let ids: Ident = content.parse().map_err(|_| batch_form(&name))?;
            if !content.is_empty() {
                return Err(batch_form(&name));
            }
            return Ok(RawArg::Batch(BatchArg { name, each, ids }));
        }
        if input.peek(Ident::peek_any) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let name = input.call(Ident::parse_any)?;
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            return Ok(RawArg::Named { name, value });
        }
        Ok(RawArg::Positional(input.parse()?))
    }
}

/// Walks the raw arguments, reporting unknown and duplicate names.
struct Options<'a> {
    attribute: &'static str,
    valid: &'static [&'static str],
    renamed: fn(&str) -> Option<String>,
    seen: Vec<String>,
    errors: &'a mut Errors,
}

impl Options<'_> {
    /// Whether `name` is a valid option seen for the first time.
    fn accept(&mut self, name: &Ident) -> bool {
        let text = name.to_string();
        if !self.valid.contains(&text.as_str()) {
            let message = match (self.renamed)(&text) {
                Some(advice) => format!(
                    "unknown option `{text}` for `#[{}]`: {advice}",
                    self.attribute
                ),
                None => format!(
                    "unknown option `{text}` for `#[{}]`{}; valid options are {}",
                    self.attribute,
                    did_you_mean(&text, self.valid.iter().copied()),
                    listed(self.valid.iter().copied())
                ),
            };
            self.errors.spanned(name, message);
            return false;
        }
        if self.seen.contains(&text) {
            self.errors
                .spanned(name, format!("duplicate option `{text}`"));
            return false;
        }
        if TTL_OPTIONS.contains(&text.as_str())
            && let Some(earlier) = self
                .seen
                .iter()
                .find(|seen| TTL_OPTIONS.contains(&seen.as_str()))
        {
            self.errors.spanned(
                name,
                format!(
                    "`{text}` conflicts with `{earlier}`: give one of `expire`, `ttl`, `class`"
                ),
            );
            return false;
        }
        self.seen.push(text);
        true
    }
}

fn raw_args(input: ParseStream<'_>) -> syn::Result<Punctuated<RawArg, Token![,]>> {
    Punctuated::parse_terminated(input)
}

impl Parse for CacheResultArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<CacheResultArgs> {
        let raw = raw_args(input)?;
        let mut errors = Errors::default();
        let (mut template, mut positional) = (None, false);
        let mut ttl = TtlArg::Default;
        let (mut cache, mut condition, mut unless, mut cache_none) = (None, None, None, None);
        let (mut tags, mut lock, mut key_args, mut krate) = (Vec::new(), false, None, None);
        let (mut stale_for, mut early_refresh, mut beta) = (None, None, None);
        let mut batch = None;
        let mut options = Options {
            attribute: "cache_result",
            valid: CACHE_RESULT_OPTIONS,
            renamed: cache_result_renamed,
            seen: Vec::new(),
            errors: &mut errors,
        };
        for arg in raw {
            let (name, value) = match arg {
                RawArg::Positional(value) => {
                    positional = true;
                    match (&template, template_lit(&value)) {
                        (None, Ok(lit)) => template = options.errors.keep(KeyTemplate::parse(lit)),
                        (None, Err(error)) => options.errors.push(error),
                        (Some(_), _) => options.errors.spanned(
                            &value,
                            "`#[cache_result]` takes one key template; give extra key parts as placeholders, like \"a:{x}:{y}\"",
                        ),
                    }
                    continue;
                }
                RawArg::Named { name, value } => (name, value),
                RawArg::Batch(arg) => {
                    if options.accept(&arg.name) {
                        batch = Some(arg);
                    }
                    continue;
                }
            };
            if !options.accept(&name) {
                continue;
            }
            let errors = &mut *options.errors;
            match name.to_string().as_str() {
                "batch" => errors.push(batch_form(&name)),
                "expire" => {
                    if let Some(seconds) = errors.keep(seconds("expire", &value)) {
                        ttl = TtlArg::Seconds(seconds);
                    }
                }
                "ttl" => ttl = TtlArg::Expr(value),
                "class" => {
                    if let Some(class) = errors.keep(class(&value)) {
                        ttl = TtlArg::Class(class);
                    }
                }
                "cache" => cache = Some(value),
                "tags" => {
                    tags = errors
                        .keep(template_list("tags", &value))
                        .unwrap_or_default()
                }
                "condition" => condition = Some(value),
                "unless" => unless = Some(value),
                "cache_none" => cache_none = errors.keep(boolean("cache_none", &value)),
                "lock" => {
                    lock = errors
                        .keep(boolean("lock", &value))
                        .is_some_and(|lit| lit.value)
                }
                "stale_for" => stale_for = errors.keep(seconds("stale_for", &value)),
                "early_refresh" => {
                    early_refresh = errors
                        .keep(boolean("early_refresh", &value))
                        .filter(|lit| lit.value)
                }
                "beta" => beta = errors.keep(beta_value(&value)).map(|beta| (value, beta)),
                "key_args" => key_args = errors.keep(key_args_list(&value)),
                _ => krate = errors.keep(crate_path(&value)),
            }
        }
        if let (None, Some((value, _))) = (&early_refresh, &beta) {
            errors.spanned(
                value,
                "`beta` tunes early refresh, which is off: add `early_refresh = true`",
            );
        }
        let early_refresh = early_refresh.map(|_| beta.map_or(1.0, |(_, beta)| beta));
        if !positional && errors.is_empty() {
            errors.push(syn::Error::new(
                input.span(),
                "`#[cache_result]` needs a key template, like `#[cache_result(\"user:profile:{user_id}\")]`",
            ));
        }
        errors.finish()?;
        let template = template.ok_or_else(|| input.error("missing key template"))?;
        Ok(CacheResultArgs {
            template,
            ttl,
            cache,
            tags,
            condition,
            unless,
            cache_none,
            lock,
            stale_for,
            early_refresh,
            key_args,
            krate,
            batch,
        })
    }
}

fn batch_form(name: &Ident) -> syn::Error {
    syn::Error::new_spanned(
        name,
        "write `batch(id in ids)`: `ids` is the parameter holding the ids, `id` names one of them in the key template",
    )
}

impl Parse for InvalidateCacheArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<InvalidateCacheArgs> {
        let raw = raw_args(input)?;
        let mut errors = Errors::default();
        let (mut templates, mut tags, mut cache) = (Vec::new(), Vec::new(), None);
        let (mut before, mut key_args, mut krate) = (false, None, None);
        let mut options = Options {
            attribute: "invalidate_cache",
            valid: INVALIDATE_CACHE_OPTIONS,
            renamed: invalidate_cache_renamed,
            seen: Vec::new(),
            errors: &mut errors,
        };
        for arg in raw {
            let (name, value) = match arg {
                RawArg::Positional(value) => {
                    match template_lit(&value) {
                        Ok(lit) => templates.extend(options.errors.keep(KeyTemplate::parse(lit))),
                        Err(error) => options.errors.push(error),
                    }
                    continue;
                }
                RawArg::Named { name, value } => (name, value),
                RawArg::Batch(arg) => {
                    // reported as an unknown option
                    options.accept(&arg.name);
                    continue;
                }
            };
            if !options.accept(&name) {
                continue;
            }
            let errors = &mut *options.errors;
            match name.to_string().as_str() {
                "tags" => {
                    tags = errors
                        .keep(template_list("tags", &value))
                        .unwrap_or_default()
                }
                "cache" => cache = Some(value),
                "before" => {
                    before = errors
                        .keep(boolean("before", &value))
                        .is_some_and(|lit| lit.value)
                }
                "key_args" => key_args = errors.keep(key_args_list(&value)),
                _ => krate = errors.keep(crate_path(&value)),
            }
        }
        if templates.is_empty() && tags.is_empty() && errors.is_empty() {
            errors.push(syn::Error::new(
                input.span(),
                "`#[invalidate_cache]` needs at least one key template or `tags = [..]`, like `#[invalidate_cache(\"user:profile:{user_id}\")]`",
            ));
        }
        errors.finish()?;
        Ok(InvalidateCacheArgs {
            templates,
            tags,
            cache,
            before,
            key_args,
            krate,
        })
    }
}

fn cache_result_renamed(name: &str) -> Option<String> {
    Some(match name {
        "key" | "keys" | "template" => {
            "the key template is the first argument, like `#[cache_result(\"user:profile:{user_id}\")]`".into()
        }
        "prefix" | "key_prefix" => "a key prefix is set on the cache: `Cache::builder(store).prefix(\"app:\")`".into(),
        "timeout" | "expires" | "expiry" | "expiration" | "ttl_secs" | "ttl_seconds" | "seconds" => {
            "write `expire = <seconds>`, `ttl = <Duration>` or `class = \"short\"`".into()
        }
        "codec" | "serializer" => "the codec is set on the cache: `Cache::builder(store).codec(Json)`".into(),
        "before" => "`before` is an option of `#[invalidate_cache]`".into(),
        "early" | "refresh_ahead" | "refresh_early" | "eager_refresh" | "xfetch" => {
            "write `early_refresh = true` (and `beta = 1.0` to tune)".into()
        }
        _ => return None,
    })
}

fn invalidate_cache_renamed(name: &str) -> Option<String> {
    Some(match name {
        "key" | "keys" | "pattern" | "patterns" | "template" => {
            "list key templates (with `*` for patterns) as arguments, like `#[invalidate_cache(\"user:profile:{user_id}\", \"user:*:{user_id}\")]`".into()
        }
        "after" => "invalidation runs after a successful call by default; `before = true` runs it before the call".into(),
        "all_entries" => "invalidate every key with a pattern template, like \"user:*\"".into(),
        "expire" | "ttl" | "class" | "condition" | "unless" | "cache_none" | "lock"
        | "stale_for" | "early_refresh" | "beta" => {
            format!("`{name}` is an option of `#[cache_result]`; `#[invalidate_cache]` takes {}", listed(INVALIDATE_CACHE_OPTIONS.iter().copied()))
        }
        _ => return None,
    })
}

fn literal(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn template_lit(value: &Expr) -> syn::Result<LitStr> {
    match literal(value) {
        Some(Lit::Str(lit)) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "expected a key template string, like \"user:profile:{user_id}\"",
        )),
    }
}

fn seconds(option: &str, value: &Expr) -> syn::Result<LitInt> {
    let wrong = || {
        let advice = match option {
            "expire" => "; for a computed duration write `ttl = Duration::from_secs(..)`",
            _ => "",
        };
        syn::Error::new_spanned(
            value,
            format!("`{option}` takes a whole number of seconds, like `{option} = 1800`{advice}"),
        )
    };
    let Some(Lit::Int(lit)) = literal(value) else {
        return Err(wrong());
    };
    match lit.base10_parse::<u64>() {
        Ok(0) => Err(syn::Error::new_spanned(
            lit,
            format!("`{option}` must be at least 1 second"),
        )),
        Ok(_) => Ok(lit.clone()),
        Err(_) => Err(wrong()),
    }
}

fn beta_value(value: &Expr) -> syn::Result<f64> {
    let wrong = || {
        syn::Error::new_spanned(
            value,
            "`beta` takes a number above 0, like `beta = 1.0` (above 1 refreshes earlier, below 1 later)",
        )
    };
    let beta = match literal(value) {
        Some(Lit::Float(lit)) => lit.base10_parse::<f64>().map_err(|_| wrong())?,
        Some(Lit::Int(lit)) => lit.base10_parse::<f64>().map_err(|_| wrong())?,
        _ => return Err(wrong()),
    };
    match beta.is_finite() && beta > 0.0 {
        true => Ok(beta),
        false => Err(wrong()),
    }
}

fn class(value: &Expr) -> syn::Result<Ident> {
    let wrong =
        || syn::Error::new_spanned(value, "`class` takes \"default\", \"short\" or \"long\"");
    let Some(Lit::Str(lit)) = literal(value) else {
        return Err(wrong());
    };
    let variant = match lit.value().as_str() {
        "default" => "Default",
        "short" => "Short",
        "long" => "Long",
        _ => return Err(wrong()),
    };
    Ok(Ident::new(variant, lit.span()))
}

fn boolean(option: &str, value: &Expr) -> syn::Result<LitBool> {
    match literal(value) {
        Some(Lit::Bool(lit)) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{option}` takes `true` or `false`"),
        )),
    }
}

fn string_list(value: &Expr, wrong: impl Fn() -> syn::Error) -> syn::Result<Vec<LitStr>> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        return Err(wrong());
    };
    elems
        .iter()
        .map(|elem| match literal(elem) {
            Some(Lit::Str(lit)) => Ok(lit.clone()),
            _ => Err(wrong()),
        })
        .collect()
}

fn template_list(option: &str, value: &Expr) -> syn::Result<Vec<KeyTemplate>> {
    let wrong = || {
        syn::Error::new_spanned(
            value,
            format!(
                "`{option}` takes a list of templates, like `{option} = [\"user:{{user_id}}\"]`"
            ),
        )
    };
    let mut errors = Errors::default();
    let templates = string_list(value, wrong)?
        .into_iter()
        .filter_map(|lit| errors.keep(KeyTemplate::parse(lit)))
        .collect();
    errors.finish()?;
    Ok(templates)
}

fn key_args_list(value: &Expr) -> syn::Result<KeyArgs> {
    let wrong = || {
        syn::Error::new_spanned(
            value,
            "`key_args` takes a list of parameter names, like `key_args = [\"user_id\"]`",
        )
    };
    Ok(KeyArgs {
        names: string_list(value, wrong)?,
    })
}

fn crate_path(value: &Expr) -> syn::Result<syn::Path> {
    let wrong = || {
        syn::Error::new_spanned(
            value,
            "`crate` takes a path in a string, like `crate = \"cache_core\"`",
        )
    };
    match literal(value) {
        Some(Lit::Str(lit)) => lit.parse().map_err(|_| wrong()),
        _ => Err(wrong()),
    }
}
