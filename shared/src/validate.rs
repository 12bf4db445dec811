//! Input rules shared by the Socket.IO events and the REST API, so that both
//! entry points accept and refuse exactly the same things.

use crate::ChatError;

pub const MAX_CONTENT_CHARS: usize = 4000;
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
pub const MAX_ID_CHARS: usize = 128;
pub const MAX_POOL_CHARS: usize = 64;
pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_NAME_CHARS: usize = 200;

/// U+0000 cannot be stored by every store (PostgreSQL text refuses it), so
/// it is refused at the door rather than failing a whole batch later.
fn refuse_nul(text: &str, field: &str) -> Result<(), ChatError> {
    if text.contains('\0') {
        return Err(ChatError::invalid(format!(
            "{field} must not contain the NUL character"
        )));
    }
    Ok(())
}

/// Trims `raw` and checks it holds 1..=4000 Unicode code points.
pub fn content(raw: &str) -> Result<String, ChatError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(ChatError::invalid("content must not be empty"));
    }
    refuse_nul(trimmed, "content")?;
    if chars > MAX_CONTENT_CHARS {
        return Err(ChatError::invalid(format!(
            "content must be at most {MAX_CONTENT_CHARS} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Most files one message may carry.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;

/// A message's text and the files it carries: with files, the text may be
/// empty; an internal note carries none. Returns the trimmed text.
pub fn message_body(
    raw: &str,
    attachment_ids: &[String],
    internal: bool,
) -> Result<String, ChatError> {
    if attachment_ids.is_empty() {
        return content(raw);
    }
    if internal {
        return Err(ChatError::invalid("an internal note carries no files"));
    }
    if attachment_ids.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(ChatError::invalid(format!(
            "a message carries at most {MAX_ATTACHMENTS_PER_MESSAGE} files"
        )));
    }
    for (i, id) in attachment_ids.iter().enumerate() {
        // An id the blob store could never have given names no file, so it
        // is refused here rather than looked up.
        if !crate::blob::is_valid_id(id) {
            return Err(ChatError::invalid(
                "attachment ids are the 32 lowercase hex digits an upload returns",
            ));
        }
        if attachment_ids[..i].contains(id) {
            return Err(ChatError::invalid("an attachment id is named twice"));
        }
    }
    if raw.trim().is_empty() {
        return Ok(String::new());
    }
    content(raw)
}

pub fn client_msg_id(id: &str) -> Result<(), ChatError> {
    refuse_nul(id, "clientMsgId")?;
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_CLIENT_MSG_ID_CHARS {
        return Err(ChatError::invalid(format!(
            "clientMsgId must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
        )));
    }
    Ok(())
}

pub fn session_id(id: &str) -> Result<(), ChatError> {
    refuse_nul(id, "sessionId")?;
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(ChatError::invalid("sessionId must be a non-empty string"));
    }
    Ok(())
}

pub fn user_id(id: &str, field: &str) -> Result<(), ChatError> {
    refuse_nul(id, field)?;
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(ChatError::invalid(format!(
            "{field} must be 1 to {MAX_ID_CHARS} characters"
        )));
    }
    Ok(())
}

/// Pool names appear in channel names and metrics, so they are kept to a
/// small safe alphabet.
pub fn pool(name: &str) -> Result<(), ChatError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POOL_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ChatError::invalid(format!(
            "pool must be 1 to {MAX_POOL_CHARS} characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

/// A display name: at most 200 characters, no NUL.
pub fn display_name(name: &str) -> Result<(), ChatError> {
    refuse_nul(name, "name")?;
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ChatError::invalid(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

pub fn seq(value: i64, field: &str) -> Result<(), ChatError> {
    if value < 0 {
        return Err(ChatError::invalid(format!("{field} must not be negative")));
    }
    Ok(())
}

/// The most bytes one reaction's emoji may take (UTF-8).
pub const MAX_EMOJI_BYTES: usize = 32;

/// One emoji, as a reaction carries it: a single extended grapheme cluster
/// of at most 32 bytes that is an emoji. That is a character shown as an
/// emoji by default (Emoji_Presentation), or any emoji character asked to be
/// one (VS16, U+FE0F) or given a skin tone, each possibly continued by
/// modifiers, joiners and tags (ZWJ sequences, subdivision flags); a pair of
/// regional indicators (a flag); or a keycap. Symbols shown as text by
/// default ("©", "#", "1") are refused unless so asked, so that a reaction
/// never reads as plain text.
pub fn emoji(text: &str) -> Result<(), ChatError> {
    use unicode_segmentation::UnicodeSegmentation;
    let refuse = || ChatError::invalid("emoji must be one emoji");
    if text.is_empty() || text.len() > MAX_EMOJI_BYTES {
        return Err(ChatError::invalid(format!(
            "emoji must be one emoji of at most {MAX_EMOJI_BYTES} bytes"
        )));
    }
    if text.graphemes(true).nth(1).is_some() {
        return Err(refuse());
    }
    if is_emoji_grapheme(text) {
        Ok(())
    } else {
        Err(refuse())
    }
}

fn is_emoji_grapheme(cluster: &str) -> bool {
    use unicode_properties::emoji::{EmojiStatus, UnicodeEmoji};
    let chars: Vec<char> = cluster.chars().collect();
    let is_regional = |c: char| ('\u{1F1E6}'..='\u{1F1FF}').contains(&c);
    let is_skin_tone = |c: char| ('\u{1F3FB}'..='\u{1F3FF}').contains(&c);
    match chars.as_slice() {
        [a, b] if is_regional(*a) && is_regional(*b) => return true,
        [base, '\u{20E3}'] | [base, '\u{FE0F}', '\u{20E3}']
            if base.is_ascii_digit() || matches!(base, '#' | '*') =>
        {
            return true
        }
        _ => {}
    }
    let Some((&first, rest)) = chars.split_first() else {
        return false;
    };
    // Everything after the first character continues the emoji: joiners,
    // selectors, modifiers, tags and the emoji a ZWJ sequence joins.
    if !rest.iter().all(|c| c.is_emoji_char_or_emoji_component()) {
        return false;
    }
    let shown_as_emoji = match first.emoji_status() {
        EmojiStatus::EmojiPresentation | EmojiStatus::EmojiPresentationAndModifierBase => true,
        EmojiStatus::EmojiModifierBase | EmojiStatus::EmojiOther => {
            matches!(rest.first(), Some(&c) if c == '\u{FE0F}' || is_skin_tone(c))
        }
        _ => false,
    };
    shown_as_emoji && !is_regional(first)
}

/// Trims an optional free-text field; blank becomes absent.
pub fn optional_text(
    raw: Option<String>,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, ChatError> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    refuse_nul(trimmed, field)?;
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > max_chars {
        return Err(ChatError::invalid(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    Ok(Some(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_counts_code_points_not_bytes() {
        assert!(content(&"😀".repeat(4000)).is_ok());
        assert!(content(&"😀".repeat(4001)).is_err());
        assert_eq!(content("\n\t x \n").unwrap(), "x");
    }

    #[test]
    fn nul_is_refused_everywhere() {
        assert!(content("a\0b").is_err());
        assert!(client_msg_id("a\0").is_err());
        assert!(session_id("s\0").is_err());
        assert!(user_id("u\0", "sub").is_err());
        assert!(display_name("Ann\0").is_err());
        assert!(optional_text(Some("x\0".into()), "subject", 10).is_err());
        assert!(display_name(&"n".repeat(200)).is_ok());
        assert!(display_name(&"n".repeat(201)).is_err());
    }

    #[test]
    fn attachment_ids_have_the_blob_stores_form() {
        let ids = |list: &[&str]| list.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        let good = crate::blob::new_id();
        assert_eq!(
            message_body("", &ids(&[&good]), false).expect("a stored id"),
            ""
        );
        let right_length_but_malformed = "0123456789ABCDEF0123456789abcdeg";
        assert_eq!(right_length_but_malformed.len(), good.len());
        let too_long = "a".repeat(MAX_CLIENT_MSG_ID_CHARS + 1);
        for bad in [right_length_but_malformed, &too_long, "", "f1"] {
            let error = message_body("x", &ids(&[bad]), false).expect_err(bad);
            assert_eq!(error.code, crate::ErrorCode::InvalidPayload, "{bad:?}");
        }
        assert!(message_body("x", &ids(&[&good, &good]), false).is_err());
    }

    #[test]
    fn pools_use_a_safe_alphabet() {
        assert!(pool("billing-eu_1.x").is_ok());
        assert!(pool("a b").is_err());
        assert!(pool("chat:*").is_err());
        assert!(pool(&"a".repeat(65)).is_err());
    }

    #[test]
    fn an_emoji_is_one_emoji_grapheme() {
        for good in [
            "👍",
            "❤️",
            "😂",
            "🎉",
            "✅",
            "👀",
            "🙏",
            "👍🏽",
            "☝🏻",
            "🇫🇷",
            "1️⃣",
            "#⃣",
            "👩‍💻",
            "👨‍👩‍👧‍👦",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "©️",
        ] {
            assert!(emoji(good).is_ok(), "{good:?} is an emoji");
        }
        for bad in [
            "",
            "a",
            "👍👍",
            "👍 ",
            " 👍",
            "©",
            "#",
            "1",
            "🇫",
            "🏻",
            "\u{FE0F}",
            "\u{200D}",
            "❤\u{FE0E}",
            "👍\u{301}",
            ":+1:",
            "\0",
        ] {
            assert!(emoji(bad).is_err(), "{bad:?} is no emoji");
        }
        // A ZWJ sequence longer than 32 bytes is refused even as one grapheme.
        let long = "👨‍👩‍👧‍👦‍👨‍👩‍👧";
        assert!(long.len() > MAX_EMOJI_BYTES);
        assert!(emoji(long).is_err());
    }
}
