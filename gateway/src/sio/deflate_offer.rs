//! Whether a client's `Sec-WebSocket-Extensions` offer of
//! permessage-deflate (RFC 7692 §7.1) can be accepted on the one set of
//! terms this gateway runs: no context takeover either way, a 15-bit
//! window. An offer whose parameters ask for something else (a smaller
//! server window, which the pure-Rust deflater cannot promise) or are
//! malformed is declined, and the connection uses plain frames.

/// The response to an accepted offer: neither side keeps a compression
/// context between messages, so an idle connection holds none.
pub const ACCEPTED: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

const NAME: &str = "permessage-deflate";

/// True when one of the offers in `headers` (every value of the header,
/// each a comma-separated list of offers) is a permessage-deflate offer
/// the gateway can accept.
pub fn accepts<'a>(headers: impl IntoIterator<Item = &'a str>) -> bool {
    headers
        .into_iter()
        .flat_map(|value| value.split(','))
        .any(acceptable)
}

/// One offer: `permessage-deflate; param; param=value …`.
fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case(NAME))
    {
        return false;
    }
    let mut seen: Vec<&str> = Vec::new();
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim()))),
            None => (param, None),
        };
        // §7.1: a parameter given twice makes the offer invalid.
        if seen.iter().any(|s| s.eq_ignore_ascii_case(key)) {
            return false;
        }
        seen.push(key);
        let ok = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
            // The client limits the server's window: only the full window
            // can be honoured.
            "server_max_window_bits" => value.and_then(window_bits) == Some(15),
            // The client can limit its own window if told to; any window
            // up to 15 bits inflates, so the gateway never asks it to.
            "client_max_window_bits" => value.is_none_or(|v| window_bits(v).is_some()),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A window size as §7.1.2 writes it: 8 to 15, decimal, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_browsers_and_node_clients_offer_is_accepted() {
        // Chromium and Firefox.
        assert!(accepts(["permessage-deflate; client_max_window_bits"]));
        // The `ws` package (socket.io-client in Node).
        assert!(accepts(["permessage-deflate; client_max_window_bits"]));
        assert!(accepts(["permessage-deflate"]));
        assert!(accepts([
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ]));
        assert!(accepts([
            "permessage-deflate; client_max_window_bits=\"10\"; server_max_window_bits=15"
        ]));
    }

    #[test]
    fn a_later_offer_or_header_can_be_the_acceptable_one() {
        assert!(accepts([
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        ]));
        assert!(accepts(["x-webkit-deflate-frame", "permessage-deflate"]));
    }

    #[test]
    fn terms_the_gateway_cannot_meet_or_malformed_offers_are_declined() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert!(!accepts([offer]), "{offer}");
        }
        assert!(!accepts(std::iter::empty::<&str>()));
    }
}
