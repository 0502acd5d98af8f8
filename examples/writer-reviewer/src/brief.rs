//! [`Brief`]: what the writer is asked to write — a subject, the points the text must
//! mention, and a word limit — and its text form.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The most required points a brief lists.
pub const MAX_POINTS: usize = 20;
/// The longest subject or point, in characters.
pub const MAX_PHRASE_CHARS: usize = 100;
/// The highest word limit a brief may set.
pub const MAX_WORDS: usize = 1000;

/// A brief: write about `subject`, mention every one of `points`, in at most `max_words`
/// words (words as [`str::split_whitespace`] counts them).
///
/// Its text form, as [`Brief::from_str`] reads it and [`fmt::Display`] writes it:
///
/// ```text
/// SUBJECT; must mention: POINT, POINT, ...; at most N words
/// ```
///
/// ```
/// use writer_reviewer::Brief;
///
/// let brief: Brief = "Apache Kafka; must mention: partitions, offsets; at most 40 words".parse()?;
/// assert_eq!(brief.subject, "Apache Kafka");
/// assert_eq!(brief.points, ["partitions", "offsets"]);
/// assert_eq!(brief.max_words, 40);
/// # Ok::<(), writer_reviewer::BriefError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brief {
    /// What the text is about: 1 to [`MAX_PHRASE_CHARS`] characters, no `;`.
    pub subject: String,
    /// The points the text must mention, each 1 to [`MAX_PHRASE_CHARS`] characters of
    /// letters, digits, spaces, `-` and `'`; at least one, at most [`MAX_POINTS`]. A
    /// point is mentioned when its words appear one after the other in the text, in any
    /// case.
    pub points: Vec<String>,
    /// The word limit: 1 to [`MAX_WORDS`].
    pub max_words: usize,
}

/// Why a brief is not valid. Each message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BriefError {
    /// The subject is empty, too long or holds a `;`.
    #[error("the subject must be 1 to {MAX_PHRASE_CHARS} characters without ';'")]
    Subject,
    /// No `must mention:` part, or it lists no point.
    #[error("the brief lists no point: add \"; must mention: A, B\"")]
    NoPoints,
    /// More than [`MAX_POINTS`] points.
    #[error("the brief lists {0} points; at most {MAX_POINTS}")]
    TooManyPoints(usize),
    /// A point that is empty, too long or holds other characters than letters, digits,
    /// spaces, `-` and `'`.
    #[error(
        "point {0:?} must be 1 to {MAX_PHRASE_CHARS} characters of letters, digits, spaces, '-' and '\''"
    )]
    Point(String),
    /// No `at most N words` part.
    #[error("the brief sets no word limit: add \"; at most N words\"")]
    NoWordLimit,
    /// A word limit that is not a whole number from 1 to [`MAX_WORDS`].
    #[error("the word limit must be a whole number from 1 to {MAX_WORDS}, not {0:?}")]
    WordLimit(String),
    /// A part that is neither `must mention: …` nor `at most N words`, or one given twice.
    #[error("unexpected part {0:?}: a brief is \"SUBJECT; must mention: A, B; at most N words\"")]
    Part(String),
}

impl Brief {
    /// Checks the limits above, for a brief that did not come from
    /// [`Brief::from_str`] (one read from a request, say).
    ///
    /// # Errors
    /// [`BriefError::Subject`], [`BriefError::NoPoints`], [`BriefError::TooManyPoints`],
    /// [`BriefError::Point`] or [`BriefError::WordLimit`], for the first part at fault.
    pub fn validate(&self) -> Result<(), BriefError> {
        let subject = self.subject.trim();
        if subject.is_empty() || subject.chars().count() > MAX_PHRASE_CHARS || subject.contains(';')
        {
            return Err(BriefError::Subject);
        }
        if self.points.is_empty() {
            return Err(BriefError::NoPoints);
        }
        if self.points.len() > MAX_POINTS {
            return Err(BriefError::TooManyPoints(self.points.len()));
        }
        for point in &self.points {
            let fits = !point.trim().is_empty()
                && point.chars().count() <= MAX_PHRASE_CHARS
                && point
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '\''));
            if !fits {
                return Err(BriefError::Point(point.clone()));
            }
        }
        if !(1..=MAX_WORDS).contains(&self.max_words) {
            return Err(BriefError::WordLimit(self.max_words.to_string()));
        }
        Ok(())
    }
}

impl FromStr for Brief {
    type Err = BriefError;

    /// Reads `SUBJECT; must mention: A, B; at most N words` (the two last parts in either
    /// order, their words in any case).
    fn from_str(text: &str) -> Result<Self, BriefError> {
        let mut parts = text.split(';').map(str::trim);
        let subject = parts.next().unwrap_or_default().to_owned();
        let (mut points, mut max_words) = (None, None);
        for part in parts {
            if let Some(list) = strip_prefix_ignore_case(part, "must mention:") {
                if points.is_some() {
                    return Err(BriefError::Part(part.to_owned()));
                }
                let listed: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                points = Some(listed);
            } else if let Some(limit) = strip_prefix_ignore_case(part, "at most ")
                .and_then(|rest| strip_suffix_ignore_case(rest, " words"))
            {
                if max_words.is_some() {
                    return Err(BriefError::Part(part.to_owned()));
                }
                let limit = limit.trim();
                max_words = Some(
                    limit
                        .parse::<usize>()
                        .map_err(|_| BriefError::WordLimit(limit.to_owned()))?,
                );
            } else {
                return Err(BriefError::Part(part.to_owned()));
            }
        }
        let brief = Self {
            subject,
            points: points.ok_or(BriefError::NoPoints)?,
            max_words: max_words.ok_or(BriefError::NoWordLimit)?,
        };
        brief.validate()?;
        Ok(brief)
    }
}

impl fmt::Display for Brief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; must mention: {}; at most {} words",
            self.subject,
            self.points.join(", "),
            self.max_words
        )
    }
}

/// `text` without the ASCII `prefix`, matched in any case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `text` without the ASCII `suffix`, matched in any case.
fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let start = text.len().checked_sub(suffix.len())?;
    let tail = text.get(start..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..start])
}

/// The words of `text` in lower case, split at anything that is not a letter, digit or
/// `'`: how a point is looked for in a draft.
pub(crate) fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `point` is mentioned in `text`: its words one after the other, in any case.
pub(crate) fn mentions(text: &str, point: &str) -> bool {
    let (text, point) = (words_of(text), words_of(point));
    !point.is_empty()
        && text
            .windows(point.len())
            .any(|window| window == point.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brief_reads_back_from_its_text_form() {
        let brief: Brief =
            "Apache Kafka; At most 40 words;  must mention: partitions , consumer groups"
                .parse()
                .expect("a brief");
        assert_eq!(
            brief,
            Brief {
                subject: "Apache Kafka".into(),
                points: vec!["partitions".into(), "consumer groups".into()],
                max_words: 40,
            }
        );
        assert_eq!(brief.to_string().parse::<Brief>(), Ok(brief));
    }

    #[test]
    fn a_bad_brief_names_the_part_at_fault() {
        let cases = [
            ("; must mention: a; at most 5 words", BriefError::Subject),
            ("Kafka; at most 5 words", BriefError::NoPoints),
            (
                "Kafka; must mention: ; at most 5 words",
                BriefError::NoPoints,
            ),
            ("Kafka; must mention: a", BriefError::NoWordLimit),
            (
                "Kafka; must mention: a; at most five words",
                BriefError::WordLimit("five".into()),
            ),
            (
                "Kafka; must mention: a; at most 0 words",
                BriefError::WordLimit("0".into()),
            ),
            (
                "Kafka; must mention: a.b; at most 5 words",
                BriefError::Point("a.b".into()),
            ),
            (
                "Kafka; must mention: a; please be nice",
                BriefError::Part("please be nice".into()),
            ),
            (
                "Kafka; must mention: a; must mention: b; at most 5 words",
                BriefError::Part("must mention: b".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Brief>(), Err(expected), "{text}");
        }
        let many = (0..=MAX_POINTS)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>();
        let text = format!("Kafka; must mention: {}; at most 5 words", many.join(","));
        assert_eq!(
            text.parse::<Brief>(),
            Err(BriefError::TooManyPoints(MAX_POINTS + 1))
        );
    }

    #[test]
    fn a_point_is_mentioned_by_its_whole_words_in_order_in_any_case() {
        let text = "Consumer groups share partitions. A catalog is kept.";
        assert!(mentions(text, "consumer groups"));
        assert!(mentions(text, "Partitions"));
        assert!(!mentions(text, "groups consumer"), "in order");
        assert!(!mentions(text, "log"), "whole words only");
        assert!(!mentions(text, "partition"), "not a prefix");
    }
}
