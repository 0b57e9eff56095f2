//! `%NAME%`-style templates, compiled once at config load.

use std::collections::BTreeMap;
use std::fmt;

/// Properties an endpoint exposes to templates; keys are lower-case.
pub type Props = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A compiled template such as `%NAME%-%STACK%`. Placeholders are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed placeholder starting at byte {0} (a `%` without its closing `%`)")]
    Unclosed(usize),
    #[error("invalid placeholder `%{0}%`: use letters, digits and `_`")]
    BadName(String),
}

/// A render that needed a property the endpoint does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder %{placeholder}% has no value")]
pub struct Missing {
    /// The placeholder, upper-case as operators write it.
    pub placeholder: String,
}

impl Template {
    /// Compiles `src`. `%%` is a literal `%`.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        let mut offset = 0;
        while let Some(start) = rest.find('%') {
            lit.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('%') else {
                return Err(TemplateError::Unclosed(offset + start));
            };
            let name = &after[..end];
            if name.is_empty() {
                lit.push('%');
            } else if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(name.to_ascii_lowercase()));
            } else {
                return Err(TemplateError::BadName(name.to_string()));
            }
            offset += start + end + 2;
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self {
            source: src.to_string(),
            parts,
        })
    }

    /// Renders against `props`; a placeholder without a value fails the whole render.
    pub fn render(&self, props: &Props) -> Result<String, Missing> {
        self.render_with(|k| props.get(k).map(String::as_str))
    }

    /// Renders with `lookup` giving each placeholder's value (lower-case name).
    pub fn render_with<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<String, Missing> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => match lookup(v) {
                    Some(val) => out.push_str(val),
                    None => {
                        return Err(Missing {
                            placeholder: v.to_ascii_uppercase(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }

    /// The placeholders it holds (lower-case), in order, repeats included.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Whether the template has any placeholder at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The text the template was compiled from.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> Props {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_case_insensitive_placeholders() {
        let t = Template::parse("%NAME%-%stack%").unwrap();
        let p = props(&[("name", "myservice"), ("stack", "teststack")]);
        assert_eq!(t.render(&p).unwrap(), "myservice-teststack");
    }

    #[test]
    fn missing_placeholder_fails_instead_of_writing_undefined() {
        let t = Template::parse("%NAME%.%ENVIRONMENT%").unwrap();
        let err = t.render(&props(&[("name", "a")])).unwrap_err();
        assert_eq!(err.placeholder, "ENVIRONMENT");
    }

    #[test]
    fn double_percent_is_literal_and_unclosed_is_an_error() {
        let t = Template::parse("100%% %NAME%").unwrap();
        assert_eq!(t.render(&props(&[("name", "x")])).unwrap(), "100% x");
        assert_eq!(Template::parse("%NAME"), Err(TemplateError::Unclosed(0)));
        assert!(matches!(
            Template::parse("%a b%"),
            Err(TemplateError::BadName(_))
        ));
        assert!(Template::parse("plain").unwrap().is_literal());
    }
}
