use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::LitStr;

/// A key template such as `"user:assignments:{user_id}"`: text and `{param}`,
/// `{param.field}` or `{self.field}` placeholders; `{{` and `}}` are literal braces.
pub(crate) struct KeyTemplate {
    pub(crate) lit: LitStr,
    segments: Vec<Segment>,
}

enum Segment {
    Text(String),
    Placeholder(Placeholder),
}

/// `{root.field.field}`.
pub(crate) struct Placeholder {
    pub(crate) root: String,
    fields: Vec<String>,
}

impl KeyTemplate {
    pub(crate) fn parse(lit: LitStr) -> syn::Result<KeyTemplate> {
        let text = lit.value();
        if text.is_empty() {
            return Err(syn::Error::new(
                lit.span(),
                "the key template is empty; write the key, like \"user:profile:{user_id}\"",
            ));
        }
        let segments = segments(&text).map_err(|message| syn::Error::new(lit.span(), message))?;
        Ok(KeyTemplate { lit, segments })
    }

    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Placeholder(placeholder) => Some(placeholder),
            Segment::Text(_) => None,
        })
    }

    /// Whether the template is a pattern (a `*` outside placeholders).
    pub(crate) fn is_pattern(&self) -> bool {
        self.segments
            .iter()
            .any(|segment| matches!(segment, Segment::Text(text) if text.contains('*')))
    }

    /// An expression building the key; in patterns, placeholder values are glob-escaped.
    pub(crate) fn to_string_expr(&self, krate: &TokenStream) -> TokenStream {
        let span = self.lit.span();
        let mut format = String::new();
        let mut args = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => format.push_str(&text.replace('{', "{{").replace('}', "}}")),
                Segment::Placeholder(placeholder) => {
                    format.push_str("{}");
                    let value = placeholder.expr(span);
                    let krate = respan(krate.clone(), span);
                    args.push(match self.is_pattern() {
                        true => quote_spanned!(span=> #krate::__private::escaped(&#value)),
                        false => quote_spanned!(span=> #krate::__private::displayed(&#value)),
                    });
                }
            }
        }
        let format = LitStr::new(&format, span);
        quote!(#krate::__private::format!(#format #(, #args)*))
    }
}

impl Placeholder {
    fn expr(&self, span: Span) -> TokenStream {
        let root = match self.root.as_str() {
            "self" => quote_spanned!(span=> self),
            name => format_ident!("{}", name, span = span).into_token_stream(),
        };
        let fields = self
            .fields
            .iter()
            .map(|field| format_ident!("{}", field, span = span));
        quote_spanned!(span=> (#root #(. #fields)*))
    }

    /// The placeholder as written, `{root.field}`.
    pub(crate) fn written(&self) -> String {
        let mut path = self.root.clone();
        for field in &self.fields {
            path.push('.');
            path.push_str(field);
        }
        format!("{{{path}}}")
    }
}

/// The tokens with every span set to `span`, so that errors about them point there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            }
            token.set_span(span);
            token
        })
        .collect()
}

fn segments(text: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => {
                return Err(format!(
                    "unbalanced `}}` in key template \"{text}\"; write `}}}}` for a literal brace"
                ));
            }
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(format!(
                                "unclosed `{{` in key template \"{text}\"; close the placeholder with `}}`, or write `{{{{` for a literal brace"
                            ));
                        }
                        Some(c) => inner.push(c),
                    }
                }
                if !literal.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut literal)));
                }
                segments.push(Segment::Placeholder(placeholder(&inner)?));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Text(literal));
    }
    Ok(segments)
}

fn placeholder(inner: &str) -> Result<Placeholder, String> {
    let inner = inner.trim();
    if inner.is_empty() {
        return Err("empty placeholder `{}`; name a parameter, like `{user_id}`".into());
    }
    if inner.contains(':') {
        return Err(format!(
            "format specs are not supported in `{{{inner}}}`: values are formatted with `Display`"
        ));
    }
    let mut parts = inner.split('.').map(str::trim);
    let root = parts.next().unwrap_or_default().to_owned();
    let fields: Vec<String> = parts.map(str::to_owned).collect();
    let valid =
        |part: &str| syn::parse_str::<syn::Ident>(part).is_ok() || part.parse::<u32>().is_ok();
    if !(root == "self" || syn::parse_str::<syn::Ident>(&root).is_ok())
        || !fields.iter().all(|field| valid(field))
    {
        return Err(format!(
            "`{{{inner}}}` is not a placeholder: write a parameter name, optionally with fields, like `{{user_id}}` or `{{user.id}}`"
        ));
    }
    Ok(Placeholder { root, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, String> {
        let template =
            KeyTemplate::parse(LitStr::new(text, Span::call_site())).map_err(|e| e.to_string())?;
        Ok(template.placeholders().map(Placeholder::written).collect())
    }

    #[test]
    fn finds_placeholders() {
        assert_eq!(
            parse("user:{user_id}:{self.tenant}").unwrap(),
            ["{user_id}", "{self.tenant}"]
        );
        assert_eq!(parse("a:{ user.id }").unwrap(), ["{user.id}"]);
        assert_eq!(parse("pair:{p.0}").unwrap(), ["{p.0}"]);
        assert!(parse("literal:{{braces}}").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_templates() {
        for bad in [
            "",
            "user:{id",
            "user:id}",
            "user:{}",
            "user:{id:?}",
            "user:{1x}",
            "user:{a-b}",
            "{a{b}}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn escapes_literal_braces_in_the_format_string() {
        let template = KeyTemplate::parse(LitStr::new("x:{{{id}}}", Span::call_site())).unwrap();
        let expr = template.to_string_expr(&quote!(::cachemere)).to_string();
        assert!(expr.contains("\"x:{{{}}}\""), "{expr}");
    }

    #[test]
    fn only_text_stars_make_patterns() {
        let pattern = |text| {
            KeyTemplate::parse(LitStr::new(text, Span::call_site()))
                .unwrap()
                .is_pattern()
        };
        assert!(pattern("user:*:{id}"));
        assert!(!pattern("user:{id}"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn any_template_text_parses_or_is_an_error(text in "[a-z_.:{}* é\\PC]{0,24}") {
            let _ = parse(&text);
        }

        #[test]
        fn literal_text_around_a_placeholder_is_kept(
            before in "[^{}]{0,12}",
            after in "[^{}]{0,12}",
        ) {
            let text = format!("{before}{{user_id}}{after}");
            proptest::prop_assert_eq!(parse(&text), Ok(vec!["{user_id}".to_owned()]));
        }
    }
}
