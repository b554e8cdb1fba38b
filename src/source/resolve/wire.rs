//! The DNS message format (RFC 1035 §4), just what a stub resolver needs: encoding a query
//! for one name and type, and decoding the header, question and answer section of a reply.
//!
//! Decoding is defensive: every read is bounds-checked, compression pointers may only point
//! backwards (so a pointer loop cannot exist), a name is at most 255 bytes, and nothing is
//! allocated in proportion to a count field — records are pushed as they are read, and each
//! one consumes at least 11 bytes of the packet, so a reply cannot ask for more memory than
//! its own size.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest name on the wire, length bytes included (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;
/// The Internet class.
const CLASS_IN: u16 = 1;

/// A record type. Types we do not use stay representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// An IPv4 address.
    A,
    /// An IPv6 address (RFC 3596).
    Aaaa,
    /// An alias for another name.
    Cname,
    /// Any other type.
    Other(u16),
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Cname => 5,
            RecordType::Aaaa => 28,
            RecordType::Other(c) => c,
        }
    }

    fn from_code(code: u16) -> Self {
        match code {
            1 => RecordType::A,
            5 => RecordType::Cname,
            28 => RecordType::Aaaa,
            c => RecordType::Other(c),
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordType::A => f.write_str("A"),
            RecordType::Aaaa => f.write_str("AAAA"),
            RecordType::Cname => f.write_str("CNAME"),
            RecordType::Other(c) => write!(f, "TYPE{c}"),
        }
    }
}

/// The response code of a reply (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rcode {
    /// No error.
    NoError,
    /// The server could not interpret the query.
    FormatError,
    /// The server failed (often: the authoritative servers could not be reached).
    ServerFailure,
    /// The name does not exist.
    NameError,
    /// The server does not support this kind of query.
    NotImplemented,
    /// The server refuses to answer (often: recursion is not offered to us).
    Refused,
    /// Any other code.
    Unknown(u8),
}

impl Rcode {
    fn from_code(code: u8) -> Self {
        match code {
            0 => Rcode::NoError,
            1 => Rcode::FormatError,
            2 => Rcode::ServerFailure,
            3 => Rcode::NameError,
            4 => Rcode::NotImplemented,
            5 => Rcode::Refused,
            c => Rcode::Unknown(c),
        }
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rcode::NoError => f.write_str("NOERROR"),
            Rcode::FormatError => f.write_str("FORMERR"),
            Rcode::ServerFailure => f.write_str("SERVFAIL"),
            Rcode::NameError => f.write_str("NXDOMAIN"),
            Rcode::NotImplemented => f.write_str("NOTIMP"),
            Rcode::Refused => f.write_str("REFUSED"),
            Rcode::Unknown(c) => write!(f, "RCODE{c}"),
        }
    }
}

/// Why a host name cannot be put in a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameProblem {
    /// Empty name, or two dots in a row.
    #[error("empty label")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("a label is longer than 63 bytes")]
    LongLabel,
    /// A name longer than 253 characters.
    #[error("longer than 253 characters")]
    LongName,
    /// Non-ASCII characters, spaces or control characters.
    #[error("not an ASCII host name (internationalized names must be given as xn--... punycode)")]
    NotAscii,
}

/// What is wrong with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The packet ends in the middle of something.
    #[error("packet truncated at byte {0}")]
    Short(usize),
    /// A compression pointer that does not point strictly backwards (a loop, or a forward jump).
    #[error("bad compression pointer at byte {0}")]
    BadPointer(usize),
    /// A label type other than a plain label or a pointer.
    #[error("unsupported label type at byte {0}")]
    BadLabel(usize),
    /// A name longer than 255 bytes.
    #[error("name longer than 255 bytes at byte {0}")]
    LongName(usize),
    /// An A or AAAA record whose data is not 4 or 16 bytes.
    #[error("{rtype} record with {len} bytes of data")]
    BadAddress {
        /// The record's type.
        rtype: &'static str,
        /// Its data length.
        len: u16,
    },
    /// A packet that is a query, not a reply.
    #[error("not a reply")]
    NotAReply,
}

/// A domain name in uncompressed wire form, lower-cased: comparisons are byte equality.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Name(Vec<u8>);

impl Name {
    /// The wire form of a host name written with dots (one trailing dot allowed).
    pub(crate) fn parse(host: &str) -> Result<Name, NameProblem> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() > MAX_NAME - 2 {
            return Err(NameProblem::LongName);
        }
        let mut wire = Vec::with_capacity(host.len() + 2);
        for label in host.split('.') {
            if label.is_empty() {
                return Err(NameProblem::EmptyLabel);
            }
            if label.len() > MAX_LABEL {
                return Err(NameProblem::LongLabel);
            }
            if !label.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(NameProblem::NotAscii);
            }
            wire.push(label.len() as u8); // <= 63, checked above
            wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
        wire.push(0);
        Ok(Name(wire))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pos = 0;
        while let Some(&len) = self.0.get(pos) {
            if len == 0 {
                break;
            }
            if pos > 0 {
                f.write_str(".")?;
            }
            let label = self.0.get(pos + 1..pos + 1 + len as usize).unwrap_or(&[]);
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            pos += 1 + len as usize;
        }
        if pos == 0 {
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// A query for one name and type, recursion desired, as sent over UDP (over TCP it is
/// prefixed by its length).
pub(crate) fn encode_query(id: u16, name: &Name, rtype: RecordType) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + name.0.len() + 4);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT=1, AN/NS/AR=0
    out.extend_from_slice(&name.0);
    out.extend_from_slice(&rtype.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// The data of an answer record that matters to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    Other,
}

/// One record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) owner: Name,
    pub(crate) data: RecordData,
}

/// A decoded reply: header fields, the question it answers and its answer records (the
/// authority and additional sections are not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) id: u16,
    pub(crate) truncated: bool,
    pub(crate) rcode: Rcode,
    /// The first question, if any: (name, type).
    pub(crate) question: Option<(Name, RecordType)>,
    pub(crate) answers: Vec<Record>,
}

/// The id of a packet, if it is long enough to have one.
pub(crate) fn peek_id(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.first()?, *packet.get(1)?]))
}

/// Decodes a reply. A truncated reply (TC set) may end anywhere after its header: what could
/// be read is returned and `truncated` tells the caller to ask again over TCP.
pub(crate) fn decode_reply(packet: &[u8]) -> Result<Reply, Malformed> {
    let mut r = Reader {
        buf: packet,
        pos: 0,
    };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    r.u16()?; // NSCOUNT
    r.u16()?; // ARCOUNT
    if flags & 0x8000 == 0 {
        return Err(Malformed::NotAReply);
    }
    let truncated = flags & 0x0200 != 0;
    let mut reply = Reply {
        id,
        truncated,
        rcode: Rcode::from_code((flags & 0x000f) as u8),
        question: None,
        answers: Vec::new(),
    };
    let body = (|| {
        for i in 0..qdcount {
            let name = r.name()?;
            let rtype = RecordType::from_code(r.u16()?);
            r.u16()?; // class
            if i == 0 {
                reply.question = Some((name, rtype));
            }
        }
        for _ in 0..ancount {
            let owner = r.name()?;
            let rtype = RecordType::from_code(r.u16()?);
            let class = r.u16()?;
            r.u32()?; // TTL: answers are not cached
            let len = r.u16()?;
            let start = r.pos;
            let rdata = r.take(len as usize)?;
            let data = match (rtype, class) {
                (RecordType::A, CLASS_IN) => RecordData::A(Ipv4Addr::from(
                    <[u8; 4]>::try_from(rdata)
                        .map_err(|_| Malformed::BadAddress { rtype: "A", len })?,
                )),
                (RecordType::Aaaa, CLASS_IN) => RecordData::Aaaa(Ipv6Addr::from(
                    <[u8; 16]>::try_from(rdata)
                        .map_err(|_| Malformed::BadAddress { rtype: "AAAA", len })?,
                )),
                (RecordType::Cname, CLASS_IN) => {
                    // The target may be compressed, so it is read in the whole packet.
                    let mut inner = Reader {
                        buf: &packet[..start + len as usize],
                        pos: start,
                    };
                    RecordData::Cname(inner.name()?)
                }
                _ => RecordData::Other,
            };
            reply.answers.push(Record { owner, data });
        }
        Ok(())
    })();
    match body {
        Ok(()) => Ok(reply),
        Err(Malformed::Short(_)) if truncated => Ok(reply),
        Err(e) => Err(e),
    }
}

/// A bounds-checked cursor over a packet.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Short(self.pos))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(Malformed::Short(self.buf.len()))?;
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a possibly compressed name and leaves the cursor after it (after the first
    /// pointer, if any). A pointer must point before the start of the name (or of the run it
    /// jumped to), as every real encoder's do, so no loop can exist.
    fn name(&mut self) -> Result<Name, Malformed> {
        let mut wire = Vec::with_capacity(32);
        let mut pos = self.pos;
        // Start of the run of labels being read: a pointer must jump before it, so the runs
        // start ever earlier and the walk ends (at most one jump per byte of the packet).
        let mut run_start = self.pos;
        let mut resume = None; // where the cursor continues after the first pointer
        loop {
            let len = *self.buf.get(pos).ok_or(Malformed::Short(self.buf.len()))?;
            match len & 0xc0 {
                0x00 => {
                    let label = self
                        .buf
                        .get(pos + 1..pos + 1 + len as usize)
                        .ok_or(Malformed::Short(self.buf.len()))?;
                    // Room for this label, and for the root label still to come.
                    let needed = wire.len() + 1 + label.len() + usize::from(len != 0);
                    if needed > MAX_NAME {
                        return Err(Malformed::LongName(pos));
                    }
                    wire.push(len);
                    wire.extend(label.iter().map(u8::to_ascii_lowercase));
                    pos += 1 + len as usize;
                    if len == 0 {
                        break;
                    }
                }
                0xc0 => {
                    let low = *self
                        .buf
                        .get(pos + 1)
                        .ok_or(Malformed::Short(self.buf.len()))?;
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                    if target >= run_start {
                        return Err(Malformed::BadPointer(pos));
                    }
                    resume.get_or_insert(pos + 2);
                    pos = target;
                    run_start = target;
                }
                _ => return Err(Malformed::BadLabel(pos)),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Ok(Name(wire))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds replies for tests (and documents the layout).
    pub(crate) struct ReplyBuilder {
        pub(crate) buf: Vec<u8>,
    }

    impl ReplyBuilder {
        /// A reply header with the given counts, answering `name`/`rtype`.
        pub(crate) fn new(
            id: u16,
            flags: u16,
            name: &str,
            rtype: RecordType,
            ancount: u16,
        ) -> Self {
            let mut buf = Vec::new();
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&flags.to_be_bytes());
            buf.extend_from_slice(&[0, 1]);
            buf.extend_from_slice(&ancount.to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, 0]);
            buf.extend_from_slice(&Name::parse(name).unwrap().0);
            buf.extend_from_slice(&rtype.code().to_be_bytes());
            buf.extend_from_slice(&[0, 1]);
            ReplyBuilder { buf }
        }

        /// A record whose owner is given as raw wire bytes (possibly a pointer).
        pub(crate) fn record(mut self, owner: &[u8], rtype: RecordType, data: &[u8]) -> Self {
            self.buf.extend_from_slice(owner);
            self.buf.extend_from_slice(&rtype.code().to_be_bytes());
            self.buf.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            self.buf
                .extend_from_slice(&(data.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(data);
            self
        }
    }

    /// A pointer to the question name (always at byte 12).
    pub(crate) const QNAME: &[u8] = &[0xc0, 12];

    fn wire(name: &str) -> Vec<u8> {
        Name::parse(name).unwrap().0
    }

    #[test]
    fn query_layout_matches_rfc_1035() {
        let q = encode_query(
            0xabcd,
            &Name::parse("Example.COM.").unwrap(),
            RecordType::Aaaa,
        );
        let mut expected = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"\x07example\x03com\x00");
        expected.extend_from_slice(&[0, 28, 0, 1]);
        assert_eq!(q, expected);
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(Name::parse(""), Err(NameProblem::EmptyLabel));
        assert_eq!(Name::parse("a..b"), Err(NameProblem::EmptyLabel));
        assert_eq!(Name::parse(&"x".repeat(64)), Err(NameProblem::LongLabel));
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(Name::parse(&long), Err(NameProblem::LongName));
        assert_eq!(Name::parse("bücher.de"), Err(NameProblem::NotAscii));
        assert_eq!(Name::parse("a b"), Err(NameProblem::NotAscii));
        assert!(Name::parse(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn decodes_compressed_answers_and_cname() {
        let mut b = ReplyBuilder::new(7, 0x8180, "www.example.com", RecordType::A, 2);
        // CNAME www.example.com -> cdn.example.com, target compressed as "cdn" + pointer to
        // "example.com" at byte 16 (12 + len("\x03www")).
        b = b.record(QNAME, RecordType::Cname, b"\x03cdn\xc0\x10");
        let cname_target = b.buf.len() - 6;
        let owner = [0xc0, cname_target as u8];
        b = b.record(&owner, RecordType::A, &[192, 0, 2, 7]);
        let reply = decode_reply(&b.buf).unwrap();
        assert_eq!(reply.id, 7);
        assert_eq!(reply.rcode, Rcode::NoError);
        assert!(!reply.truncated);
        assert_eq!(
            reply.question,
            Some((Name::parse("www.example.com").unwrap(), RecordType::A))
        );
        assert_eq!(
            reply.answers,
            vec![
                Record {
                    owner: Name::parse("www.example.com").unwrap(),
                    data: RecordData::Cname(Name::parse("cdn.example.com").unwrap()),
                },
                Record {
                    owner: Name::parse("cdn.example.com").unwrap(),
                    data: RecordData::A(Ipv4Addr::new(192, 0, 2, 7)),
                },
            ]
        );
        assert_eq!(
            Name::parse("CDN.example.com").unwrap().to_string(),
            "cdn.example.com"
        );
    }

    #[test]
    fn aaaa_and_unknown_types() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::Aaaa, 2)
            .record(QNAME, RecordType::Other(16), b"\x03txt")
            .record(QNAME, RecordType::Aaaa, &v6.octets());
        let reply = decode_reply(&b.buf).unwrap();
        assert_eq!(reply.answers[0].data, RecordData::Other);
        assert_eq!(reply.answers[1].data, RecordData::Aaaa(v6));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_rejected() {
        // The answer's owner points at itself.
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 1);
        let at = b.buf.len() as u8;
        let b = b.record(&[0xc0, at], RecordType::A, &[1, 2, 3, 4]);
        assert_eq!(
            decode_reply(&b.buf),
            Err(Malformed::BadPointer(at as usize))
        );
        // Two labels pointing at each other: the second jump is forward.
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 1);
        let at = b.buf.len() as u8;
        let b = b.record(&[0x01, b'x', 0xc0, at], RecordType::A, &[1, 2, 3, 4]);
        assert!(matches!(
            decode_reply(&b.buf),
            Err(Malformed::BadPointer(_))
        ));
        // A forward pointer.
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 1).record(
            &[0xc0, 200],
            RecordType::A,
            &[1, 2, 3, 4],
        );
        assert!(matches!(
            decode_reply(&b.buf),
            Err(Malformed::BadPointer(_))
        ));
    }

    #[test]
    fn long_names_through_pointers_are_bounded() {
        let label: Vec<u8> = std::iter::once(63u8).chain([b'a'; 63]).collect();
        // 3 labels of 63 bytes: 193 bytes, fine.
        let mut b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 2);
        let first = b.buf.len();
        let mut owner = label.repeat(3);
        owner.push(0);
        b = b.record(&owner, RecordType::A, &[1, 2, 3, 4]);
        // One more label in front of a pointer to it: 257 bytes.
        let mut owner = label.clone();
        owner.extend_from_slice(&[0xc0, first as u8]);
        b = b.record(&owner, RecordType::A, &[1, 2, 3, 4]);
        assert!(matches!(decode_reply(&b.buf), Err(Malformed::LongName(_))));
        // Without pointers too.
        let mut owner = label.repeat(4);
        owner.push(0);
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 1).record(
            &owner,
            RecordType::A,
            &[1, 2, 3, 4],
        );
        assert!(matches!(decode_reply(&b.buf), Err(Malformed::LongName(_))));
    }

    #[test]
    fn truncated_packets_are_errors_unless_tc_is_set() {
        let b = ReplyBuilder::new(9, 0x8180, "host.example", RecordType::A, 1).record(
            QNAME,
            RecordType::A,
            &[10, 0, 0, 1],
        );
        let full = decode_reply(&b.buf).unwrap();
        assert_eq!(full.answers.len(), 1);
        for cut in 0..b.buf.len() {
            let r = decode_reply(&b.buf[..cut]);
            assert!(matches!(r, Err(Malformed::Short(_))), "cut at {cut}: {r:?}");
        }
        // Same with TC: everything past the header is optional.
        let mut tc = b.buf.clone();
        tc[2] |= 0x02;
        let r = decode_reply(&tc[..20]).unwrap();
        assert!(r.truncated && r.answers.is_empty());
        assert!(decode_reply(&tc[..11]).is_err());
    }

    #[test]
    fn bad_address_lengths_and_queries_are_rejected() {
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 1).record(
            QNAME,
            RecordType::A,
            &[1, 2, 3],
        );
        assert_eq!(
            decode_reply(&b.buf),
            Err(Malformed::BadAddress { rtype: "A", len: 3 })
        );
        let query = encode_query(1, &Name::parse("h").unwrap(), RecordType::A);
        assert_eq!(decode_reply(&query), Err(Malformed::NotAReply));
        assert_eq!(peek_id(&query), Some(1));
        assert_eq!(peek_id(&[0]), None);
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        // ANCOUNT = 65535 with no records: fails at the first, allocates nothing up front.
        let b = ReplyBuilder::new(1, 0x8180, "h", RecordType::A, 0xffff);
        assert!(matches!(decode_reply(&b.buf), Err(Malformed::Short(_))));
        assert_eq!(wire("a.b"), b"\x01a\x01b\x00");
    }

    #[test]
    fn rcodes_and_names_display() {
        let b = ReplyBuilder::new(1, 0x8183, "nope.example", RecordType::A, 0);
        assert_eq!(decode_reply(&b.buf).unwrap().rcode, Rcode::NameError);
        assert_eq!(Rcode::NameError.to_string(), "NXDOMAIN");
        assert_eq!(Rcode::from_code(9).to_string(), "RCODE9");
        assert_eq!(Name(b"\x03a.b\x00".to_vec()).to_string(), "a\\046b");
        assert_eq!(Name(vec![0]).to_string(), ".");
    }
}
