//! Bad records mixed into a stream of good ones, as a broken producer would send them: a
//! corrupt Avro body behind a valid frame, a frame naming a schema id the registry does not
//! know, a value that is not in the Confluent wire format at all. Each is made so that no
//! reader can take it for a record (not merely unlikely to parse).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::decode::frame;

/// A schema id no test registry hands out.
pub const UNKNOWN_SCHEMA_ID: u32 = 1_999_999_999;

/// Shares of the records (0.10: one in ten) sent spoiled, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BadMix {
    pub corrupt: f64,
    pub unknown_id: f64,
    pub unframed: f64,
}

impl BadMix {
    /// `percent` of the records, as a broken serializer spreads them: four tenths corrupt
    /// bodies, four tenths unknown schema ids, two tenths unframed values.
    pub fn percent(percent: f64) -> Self {
        let share = percent / 100.0;
        Self { corrupt: share * 0.4, unknown_id: share * 0.4, unframed: share * 0.2 }
    }

    pub fn is_empty(&self) -> bool {
        self.corrupt + self.unknown_id + self.unframed <= 0.0
    }
}

/// How a record was spoiled; the sink's class for it is [`Spoiled::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Spoiled {
    Corrupt,
    UnknownId,
    Unframed,
}

impl Spoiled {
    /// The class the sink counts it under (`kps_bad_records_total`, the dead-letter headers).
    pub fn class(self) -> &'static str {
        match self {
            Spoiled::Corrupt => "corrupt_body",
            Spoiled::UnknownId => "unknown_schema",
            Spoiled::Unframed => "not_framed",
        }
    }
}

/// Decides, record by record, which to spoil and how; seeded, so a plan is reproducible.
pub struct Spoiler {
    mix: BadMix,
    rng: StdRng,
}

impl Spoiler {
    pub fn new(mix: BadMix, seed: u64) -> Self {
        Self { mix, rng: StdRng::seed_from_u64(seed ^ 0x5b0_11ed) }
    }

    /// The kind to spoil the next record as, if any.
    pub fn roll(&mut self) -> Option<Spoiled> {
        if self.mix.is_empty() {
            return None;
        }
        let r: f64 = self.rng.random();
        let BadMix { corrupt, unknown_id, unframed } = self.mix;
        if r < corrupt {
            Some(Spoiled::Corrupt)
        } else if r < corrupt + unknown_id {
            Some(Spoiled::UnknownId)
        } else if r < corrupt + unknown_id + unframed {
            Some(Spoiled::Unframed)
        } else {
            None
        }
    }

    /// The value to send instead of `body` (the unframed Avro of a Debezium envelope, whose
    /// first field `before` is a `[null, Value]` union).
    pub fn payload(&mut self, kind: Spoiled, value_schema_id: u32, body: &[u8]) -> Vec<u8> {
        match kind {
            Spoiled::Corrupt => frame::encode(value_schema_id, &self.corrupt(body)),
            Spoiled::UnknownId => frame::encode(UNKNOWN_SCHEMA_ID, body),
            Spoiled::Unframed => format!("{{\"id\": {}, \"json\": true}}", self.rng.random::<u32>()).into_bytes(),
        }
    }

    /// Three corruptions, in turn at random: the body cut short, the body with bytes after its
    /// end, random bytes whose first says union branch 3 of a two-branch union.
    fn corrupt(&mut self, body: &[u8]) -> Vec<u8> {
        match self.rng.random_range(0..3) {
            0 => body[..self.rng.random_range(1..body.len().max(2))].to_vec(),
            1 => {
                let mut b = body.to_vec();
                b.extend((0..self.rng.random_range(1..8)).map(|_| self.rng.random::<u8>()));
                b
            }
            _ => {
                let mut b = vec![0x06];
                b.extend((0..self.rng.random_range(20..400)).map(|_| self.rng.random::<u8>()));
                b
            }
        }
    }
}
