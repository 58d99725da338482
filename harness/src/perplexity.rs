//! `trl perplexity`: a text scored token by token in the module, and its perplexity.
//!
//! The text is tokenized as the model's tokenizer does (BOS when it adds one; special-token text
//! is plain text), every token after the first is scored given all tokens before it, in windows of
//! the loaded context when the text is longer ([`tinyrustlm::score::windows`]), and the perplexity
//! is exp(mean NLL) in natural log ([`tinyrustlm::score::perplexity`]). The JS wrapper's
//! `lm.score(text)` does the same and prints (`JSON.stringify`) the same bytes as [`Perplexity::to_json`].

use anyhow::{bail, Result};

use crate::runtime::Runtime;

/// One scored text, with `trl perplexity --json`'s field names.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// Every token of the text, BOS included.
    pub tokens: Vec<u32>,
    /// `argmax[i]`: the most likely token after `tokens[..=i]` (as many as `tokens`).
    pub argmax: Vec<u32>,
    /// `nll[i]`: -ln P(`tokens[i + 1]` | `tokens[..=i]`) (one fewer than `tokens`).
    pub nll: Vec<f32>,
    pub perplexity: f64,
}

/// Scores `text` with the loaded model in windows of its context length.
pub fn score_text(rt: &mut Runtime, text: &str) -> Result<Perplexity> {
    let tokens = rt.tokenize(text, false)?;
    let context = rt.diagnostics()?.context_len as usize;
    score_ids(rt, tokens, context)
}

/// Scores `tokens` in windows of `context` tokens (at most the loaded context length).
pub fn score_ids(rt: &mut Runtime, tokens: Vec<u32>, context: usize) -> Result<Perplexity> {
    if tokens.len() < 2 {
        bail!("the text has {} token(s): perplexity needs at least 2 (one to condition on, one to score)", tokens.len());
    }
    let windows: Vec<_> = tinyrustlm::score::windows(tokens.len(), context).collect();
    if windows.is_empty() {
        bail!("a context of {context} positions cannot score a text of {} tokens in windows (at least 2 are needed)", tokens.len());
    }
    let (mut argmax, mut nll) = (Vec::with_capacity(tokens.len()), Vec::with_capacity(tokens.len() - 1));
    for (k, w) in windows.iter().enumerate() {
        let scores = rt.score_tokens(&tokens[w.start..w.end], w.first_scored as u32, 0)?;
        nll.extend(scores.logprobs.iter().map(|lp| -lp));
        // argmax[i] comes from the window that scores token i + 1; the final prediction (after the
        // whole text) from the last window.
        let keep = if k + 1 == windows.len() { scores.argmax.len() } else { scores.argmax.len() - 1 };
        argmax.extend_from_slice(&scores.argmax[..keep]);
    }
    debug_assert_eq!((argmax.len(), nll.len()), (tokens.len(), tokens.len() - 1));
    let perplexity = tinyrustlm::score::perplexity(&nll).expect("at least one token was scored");
    Ok(Perplexity { tokens, argmax, nll, perplexity })
}

impl Perplexity {
    /// `{"tokens":[...],"argmax":[...],"nll":[...],"perplexity":x}` exactly as JavaScript's
    /// `JSON.stringify` writes the same object (numbers in ECMAScript's shortest form), so the two
    /// hosts can be compared byte for byte.
    pub fn to_json(&self) -> String {
        let ints = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let nll = self.nll.iter().map(|&x| js_number(f64::from(x))).collect::<Vec<_>>().join(",");
        format!("{{\"tokens\":[{}],\"argmax\":[{}],\"nll\":[{nll}],\"perplexity\":{}}}", ints(&self.tokens), ints(&self.argmax), js_number(self.perplexity))
    }
}

/// ECMAScript's Number::toString(x) (ECMA-262 §6.1.6.1.20): the shortest digits that round-trip
/// (Rust's `{:e}` gives the same digits), written plainly for exponents in -7..21 and as
/// `d.ddde±n` otherwise; NaN and the infinities as JSON's `null`.
pub fn js_number(x: f64) -> String {
    if !x.is_finite() {
        return "null".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    // x = 0.d1d2...dk × 10^n
    let n = exp.parse::<i32>().expect("{:e} writes an integer exponent") + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e = if e >= 0 { format!("+{e}") } else { format!("-{}", -e) };
        if k == 1 {
            format!("{digits}e{e}")
        } else {
            format!("{}.{}e{e}", &digits[..1], &digits[1..])
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        // Each pair: the value and `String(value)` in JavaScript.
        let cases: [(f64, &str); 14] = [
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (123456789.0, "123456789"),
            (0.1, "0.1"),
            (f64::from(2.34f32), "2.3399999141693115"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.2345e-7, "1.2345e-7"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e20, "100000000000000000000"),
            (f64::from(3.5762787e-7f32), "3.5762786865234375e-7"),
            (f64::NAN, "null"),
        ];
        for (x, js) in cases {
            assert_eq!(js_number(x), js, "{x:e}");
        }
    }

    #[test]
    fn the_json_has_the_four_fields_in_order() {
        let p = Perplexity { tokens: vec![1, 2, 3], argmax: vec![2, 3, 4], nll: vec![0.5, 0.25], perplexity: 1.4549914146182013 };
        assert_eq!(p.to_json(), r#"{"tokens":[1,2,3],"argmax":[2,3,4],"nll":[0.5,0.25],"perplexity":1.4549914146182013}"#);
    }
}
