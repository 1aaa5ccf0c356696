//! The Confluent Schema Registry wire format: magic byte 0, 4-byte big-endian schema id, body.

use super::DecodeError;

pub const MAGIC: u8 = 0;
pub const HEADER_LEN: usize = 5;

/// A framed value, borrowed from the Kafka message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub schema_id: u32,
    pub body: &'a [u8],
}

/// Splits a Confluent-framed value into its schema id and Avro body.
pub fn parse(value: &[u8]) -> Result<Frame<'_>, DecodeError> {
    match value {
        [MAGIC, a, b, c, d, body @ ..] => Ok(Frame { schema_id: u32::from_be_bytes([*a, *b, *c, *d]), body }),
        [m, ..] if *m != MAGIC => Err(DecodeError::NotFramed(format!("magic byte is {m:#04x}, expected 0x00"))),
        _ => Err(DecodeError::NotFramed(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", value.len()))),
    }
}

/// As [`parse`], for a record key: the error says it was the key.
pub fn parse_key(key: &[u8]) -> Result<Frame<'_>, DecodeError> {
    parse(key).map_err(|e| match e {
        DecodeError::NotFramed(reason) => DecodeError::NotFramed(format!("key: {reason}")),
        other => other,
    })
}

/// Prepends the Confluent header to an Avro body (producers and tests).
pub fn encode(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_bytes() -> Result<(), DecodeError> {
        let f = parse(&[0, 0, 0, 1, 2, 0xAA, 0xBB])?;
        assert_eq!(f.schema_id, 258);
        assert_eq!(f.body, &[0xAA, 0xBB]);
        assert_eq!(encode(258, &[0xAA, 0xBB]), vec![0, 0, 0, 1, 2, 0xAA, 0xBB]);
        Ok(())
    }

    #[test]
    fn rejects_unframed_values() {
        assert!(matches!(parse(b"{\"json\":1}"), Err(DecodeError::NotFramed(_))));
        assert!(matches!(parse(&[0, 0, 1]), Err(DecodeError::NotFramed(_))));
        assert!(matches!(parse(&[]), Err(DecodeError::NotFramed(_))));
    }
}
