//! The shape check a SAML response passes before any cryptography, with a reader
//! that expands no entities (quick-xml). XML signature wrapping works by moving the
//! signed element and putting an unsigned one where a naive reader looks; this
//! refuses every document whose shape leaves room for that:
//! - no DOCTYPE (so no entity can be declared, no billion laughs, no external
//!   entity), no processing instruction but the declaration, **no comment** (a
//!   comment splits a NameID's text: `alice@partner.example<!---->.evil`);
//! - the root is `samlp:Response`, with **exactly one** `saml:Assertion` (or
//!   `EncryptedAssertion`) in the whole document, a direct child of the root;
//! - every `ID` unique; each `ds:Signature` a direct child of the Response or the
//!   Assertion, with exactly one `Reference`, to its own parent (`#` + its ID),
//!   transformed only by enveloped-signature and exclusive canonicalisation;
//! - bounded depth and size.
//!
//! Which element the signature then really covers is xmlsec's answer; this makes
//! sure there is only one candidate for each.

use std::collections::BTreeSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub(crate) const PROTOCOL: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const ASSERTION: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 5_000;

const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// What the shape check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) response_id: String,
    /// `None` for an encrypted assertion.
    pub(crate) assertion_id: Option<String>,
    pub(crate) encrypted: bool,
    pub(crate) response_signed: bool,
    pub(crate) assertion_signed: bool,
}

/// One open element, as far as the check needs it.
#[derive(Debug)]
struct Open {
    namespace: Vec<u8>,
    local: Vec<u8>,
    id: Option<String>,
    /// For a `ds:Signature`: what it references, and whether its transforms are allowed.
    references: Vec<String>,
    transforms_ok: bool,
}

fn fail(reason: impl Into<String>) -> String {
    reason.into()
}

fn attribute(element: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, String> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|e| fail(format!("malformed attribute: {e}")))?;
        if attribute.key.as_ref() == name {
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| fail(format!("malformed attribute value: {e}")))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// Sees each element as the walk meets it.
trait Visitor {
    /// An element at `depth` (0 for the root) in the namespace it resolved to;
    /// `empty` for `<x/>`, which gets no `end`.
    fn start(
        &mut self,
        namespace: &[u8],
        element: &BytesStart<'_>,
        depth: usize,
        empty: bool,
    ) -> Result<(), String>;
    /// The element at `depth` closed.
    fn end(&mut self, depth: usize);
}

/// Attribute rules for every element:
/// - a namespace declaration may not use references (`xmlns:ds="…xmldsig&#35;"`):
///   quick-xml takes the value as written and libxml2 expands it, so the two would
///   disagree about which elements are signatures;
/// - no `xml:id` and no prefixed `ID`: libxml2 and xmlsec treat them as IDs too,
///   and only the plain `ID` is what this check and the signatures agree on.
fn check_attributes(element: &BytesStart<'_>) -> Result<(), String> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|e| fail(format!("malformed attribute: {e}")))?;
        let key = attribute.key.as_ref();
        if (key == b"xmlns" || key.starts_with(b"xmlns:")) && attribute.value.contains(&b'&') {
            return Err(fail("a namespace declaration with a character reference"));
        }
        let prefixed_id = key
            .iter()
            .position(|b| *b == b':')
            .is_some_and(|colon| &key[colon + 1..] == b"ID" || &key[colon + 1..] == b"id");
        if prefixed_id {
            return Err(fail("an ID attribute with a prefix (xml:id or similar)"));
        }
    }
    Ok(())
}

/// Names that mean something only in their own namespace: the same name in any
/// other is refused, so that no reader can take one for the other.
const SIGNATURE_NAMES: &[&[u8]] = &[
    b"Signature",
    b"SignedInfo",
    b"SignatureValue",
    b"Reference",
    b"Transforms",
    b"Transform",
    b"DigestMethod",
    b"DigestValue",
    b"CanonicalizationMethod",
    b"SignatureMethod",
    b"KeyInfo",
    b"Object",
    b"Manifest",
    b"SignatureProperties",
];
const ASSERTION_NAMES: &[&[u8]] = &[b"Assertion", b"EncryptedAssertion"];

/// Refuses what no SAML document needs and every XML attack uses: a DOCTYPE,
/// processing instructions, comments (`allow_comments` only for metadata, which
/// nothing reads text from across a comment), entity references beyond XML's five
/// and character references, too deep or too many elements.
fn walk(xml: &str, allow_comments: bool, visitor: &mut impl Visitor) -> Result<(), String> {
    let mut reader = NsReader::from_str(xml);
    let mut depth = 0_usize;
    let mut elements = 0_usize;
    let mut seen_root = false;
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| fail(format!("not well-formed XML: {e}")))?;
        let namespace = match resolved {
            ResolveResult::Bound(ns) => ns.as_ref().to_vec(),
            ResolveResult::Unbound => Vec::new(),
            ResolveResult::Unknown(prefix) => {
                return Err(fail(format!(
                    "undeclared namespace prefix `{}`",
                    String::from_utf8_lossy(&prefix)
                )));
            }
        };
        match event {
            Event::Start(_) | Event::Empty(_) if seen_root && depth == 0 => {
                return Err(fail("more than one root element"));
            }
            Event::Start(element) => {
                seen_root = true;
                elements += 1;
                if elements > MAX_ELEMENTS || depth >= MAX_DEPTH {
                    return Err(fail("too many or too deeply nested elements"));
                }
                check_attributes(&element)?;
                visitor.start(&namespace, &element, depth, false)?;
                depth += 1;
            }
            Event::Empty(element) => {
                seen_root = true;
                elements += 1;
                if elements > MAX_ELEMENTS || depth >= MAX_DEPTH {
                    return Err(fail("too many or too deeply nested elements"));
                }
                check_attributes(&element)?;
                visitor.start(&namespace, &element, depth, true)?;
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                visitor.end(depth);
            }
            Event::DocType(_) => return Err(fail("a DOCTYPE is not allowed")),
            Event::PI(_) => return Err(fail("processing instructions are not allowed")),
            Event::Comment(_) if !allow_comments => {
                return Err(fail("comments are not allowed"));
            }
            Event::GeneralRef(reference) => {
                let name: &[u8] = &reference;
                let known = matches!(name, b"amp" | b"lt" | b"gt" | b"quot" | b"apos")
                    || reference.is_char_ref();
                if !known {
                    return Err(fail("an undeclared entity reference"));
                }
            }
            Event::Text(text) if depth == 0 && !text.iter().all(u8::is_ascii_whitespace) => {
                return Err(fail("text outside the root element"));
            }
            Event::CData(_) if depth == 0 => return Err(fail("text outside the root element")),
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(fail("no root element"));
    }
    Ok(())
}

/// The well-formedness rules alone (no structure): for IdP metadata.
pub(crate) fn check_plain(xml: &str) -> Result<(), String> {
    walk(xml, true, &mut Nothing)
}

/// The same rules, comments refused too: for logout messages, whose text is read.
pub(crate) fn check_message(xml: &str) -> Result<(), String> {
    walk(xml, false, &mut Nothing)
}

/// A walk that only enforces the document rules.
struct Nothing;

impl Visitor for Nothing {
    fn start(&mut self, _: &[u8], _: &BytesStart<'_>, _: usize, _: bool) -> Result<(), String> {
        Ok(())
    }
    fn end(&mut self, _: usize) {}
}

/// What the walk over a response collects.
#[derive(Default)]
struct ResponseScan {
    stack: Vec<Open>,
    ids: BTreeSet<String>,
    response_id: Option<String>,
    /// Each assertion's ID and whether it is encrypted.
    assertions: Vec<(Option<String>, bool)>,
    /// Each signature's depth, its parent's ID, its references and whether its
    /// transforms are allowed.
    signatures: Vec<(usize, Option<String>, Vec<String>, bool)>,
}

impl ResponseScan {
    fn innermost_signature(&mut self) -> Option<&mut Open> {
        self.stack
            .iter_mut()
            .rev()
            .find(|open| open.namespace == DSIG && open.local == b"Signature")
    }

    fn parent_is(&self, namespace: &[u8], local: &[u8]) -> bool {
        self.stack
            .last()
            .is_some_and(|open| open.namespace == namespace && open.local == local)
    }
}

impl Visitor for ResponseScan {
    fn start(
        &mut self,
        namespace: &[u8],
        element: &BytesStart<'_>,
        depth: usize,
        empty: bool,
    ) -> Result<(), String> {
        let local = element.local_name().as_ref().to_vec();
        if SIGNATURE_NAMES.contains(&local.as_slice()) && namespace != DSIG {
            return Err(fail("a signature element in another namespace"));
        }
        if ASSERTION_NAMES.contains(&local.as_slice()) && namespace != ASSERTION {
            return Err(fail("an assertion element in another namespace"));
        }
        if namespace == DSIG && (local == b"Object" || local == b"Manifest") {
            return Err(fail(
                "ds:Object and ds:Manifest have no place in a SAML response",
            ));
        }
        let id = attribute(element, b"ID")?;
        if let Some(id) = &id
            && !self.ids.insert(id.clone())
        {
            return Err(fail(format!("the ID `{id}` appears twice")));
        }
        if depth == 0 {
            if namespace != PROTOCOL || local != b"Response" {
                return Err(fail("the root is not a samlp:Response"));
            }
            self.response_id = Some(id.clone().ok_or_else(|| fail("the Response has no ID"))?);
        }
        if namespace == ASSERTION && (local == b"Assertion" || local == b"EncryptedAssertion") {
            if depth != 1 {
                return Err(fail("an assertion that is not a child of the Response"));
            }
            self.assertions
                .push((id.clone(), local == b"EncryptedAssertion"));
        }
        if namespace == DSIG && local == b"Signature" {
            let parent_ok = (depth == 1 && self.parent_is(PROTOCOL, b"Response"))
                || (depth == 2 && self.parent_is(ASSERTION, b"Assertion"));
            if !parent_ok {
                return Err(fail(
                    "a signature that is not a child of the Response or the Assertion",
                ));
            }
            if empty {
                return Err(fail("an empty Signature"));
            }
        }
        if namespace == DSIG && local == b"Reference" {
            let uri = attribute(element, b"URI")?.unwrap_or_default();
            self.innermost_signature()
                .ok_or_else(|| fail("a Reference outside a Signature"))?
                .references
                .push(uri);
        }
        if namespace == DSIG && local == b"Transform" {
            let algorithm = attribute(element, b"Algorithm")?.unwrap_or_default();
            if algorithm != ENVELOPED
                && algorithm != EXC_C14N
                && let Some(signature) = self.innermost_signature()
            {
                signature.transforms_ok = false;
            }
        }
        if !empty {
            self.stack.push(Open {
                namespace: namespace.to_vec(),
                local,
                id,
                references: Vec::new(),
                transforms_ok: true,
            });
        }
        Ok(())
    }

    fn end(&mut self, depth: usize) {
        if self.stack.len() <= depth {
            return;
        }
        let Some(closed) = self.stack.pop() else {
            return;
        };
        if closed.namespace == DSIG && closed.local == b"Signature" {
            let parent_id = self.stack.last().and_then(|parent| parent.id.clone());
            self.signatures
                .push((depth, parent_id, closed.references, closed.transforms_ok));
        }
    }
}

/// Checks a SAML response's shape; see the module documentation.
pub(crate) fn check_response(xml: &str) -> Result<Shape, String> {
    let mut scan = ResponseScan::default();
    walk(xml, false, &mut scan)?;
    let response_id = scan.response_id.ok_or_else(|| fail("no Response"))?;
    let [(assertion_id, encrypted)] = scan.assertions.as_slice() else {
        return Err(fail(format!(
            "{} assertions where exactly one is allowed",
            scan.assertions.len()
        )));
    };
    if !encrypted && assertion_id.is_none() {
        return Err(fail("the Assertion has no ID"));
    }
    let mut response_signed = false;
    let mut assertion_signed = false;
    for (depth, parent_id, references, transforms_ok) in &scan.signatures {
        let [reference] = references.as_slice() else {
            return Err(fail("a signature must have exactly one Reference"));
        };
        if !transforms_ok {
            return Err(fail(
                "a signature transform other than enveloped and exc-c14n",
            ));
        }
        let Some(parent_id) = parent_id else {
            return Err(fail("a signature whose parent has no ID"));
        };
        if reference.strip_prefix('#') != Some(parent_id.as_str()) {
            return Err(fail(
                "a signature that references an element other than its parent",
            ));
        }
        match depth {
            1 => response_signed = true,
            _ => assertion_signed = true,
        }
    }
    Ok(Shape {
        response_id,
        assertion_id: assertion_id.clone(),
        encrypted: *encrypted,
        response_signed,
        assertion_signed,
    })
}

/// Checks a decrypted assertion: the same rules for the document, its root a
/// `saml:Assertion` with an ID, no assertion nested in it, every ID unique.
/// (Its authenticity is the signed Response's, which covered the ciphertext.)
pub(crate) fn check_assertion(xml: &str) -> Result<String, String> {
    #[derive(Default)]
    struct AssertionScan {
        root_id: Option<String>,
        ids: BTreeSet<String>,
    }
    impl Visitor for AssertionScan {
        fn start(
            &mut self,
            namespace: &[u8],
            element: &BytesStart<'_>,
            depth: usize,
            _: bool,
        ) -> Result<(), String> {
            let local = element.local_name();
            let is_assertion = namespace == ASSERTION
                && (local.as_ref() == b"Assertion" || local.as_ref() == b"EncryptedAssertion");
            let id = attribute(element, b"ID")?;
            if let Some(id) = &id
                && !self.ids.insert(id.clone())
            {
                return Err(fail(format!("the ID `{id}` appears twice")));
            }
            match (depth, is_assertion) {
                (0, true) if local.as_ref() == b"Assertion" => {
                    self.root_id = Some(id.ok_or_else(|| fail("the Assertion has no ID"))?);
                    Ok(())
                }
                (0, _) => Err(fail("the decrypted root is not a saml:Assertion")),
                (_, true) => Err(fail("an assertion inside the assertion")),
                _ => Ok(()),
            }
        }
        fn end(&mut self, _: usize) {}
    }
    let mut scan = AssertionScan::default();
    walk(xml, false, &mut scan)?;
    scan.root_id.ok_or_else(|| fail("no Assertion"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(inner: &str) -> String {
        format!(
            r##"<?xml version="1.0"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_r">{inner}</samlp:Response>"##
        )
    }

    fn signature(reference: &str) -> String {
        format!(
            r##"<ds:Signature><ds:SignedInfo><ds:Reference URI="{reference}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms></ds:Reference></ds:SignedInfo></ds:Signature>"##
        )
    }

    #[test]
    fn a_signed_assertion_in_a_response_passes() {
        let xml = response(&format!(
            r##"<saml:Issuer>idp</saml:Issuer><saml:Assertion ID="_a"><saml:Issuer>idp</saml:Issuer>{}<saml:Subject/></saml:Assertion>"##,
            signature("#_a")
        ));
        let shape = check_response(&xml).unwrap();
        assert_eq!(shape.assertion_id.as_deref(), Some("_a"));
        assert!(shape.assertion_signed && !shape.response_signed);
        let both = response(&format!(
            r##"{}<saml:Assertion ID="_a">{}</saml:Assertion>"##,
            signature("#_r"),
            signature("#_a")
        ));
        let shape = check_response(&both).unwrap();
        assert!(shape.assertion_signed && shape.response_signed);
    }

    #[test]
    fn wrapping_shapes_are_refused() {
        let cases = [
            // Two assertions, the evil one first.
            response(&format!(
                r##"<saml:Assertion ID="_evil"/><saml:Assertion ID="_a">{}</saml:Assertion>"##,
                signature("#_a")
            )),
            // The signed assertion tucked away under another element.
            response(&format!(
                r##"<samlp:Extensions><saml:Assertion ID="_a">{}</saml:Assertion></samlp:Extensions><saml:Assertion ID="_evil"/>"##,
                signature("#_a")
            )),
            // A signature that points elsewhere.
            response(&format!(
                r##"<saml:Assertion ID="_a">{}</saml:Assertion>"##,
                signature("#_r")
            )),
            // Duplicate IDs.
            response(&format!(
                r##"<saml:Assertion ID="_r">{}</saml:Assertion>"##,
                signature("#_r")
            )),
            // A signature inside the subject.
            response(&format!(
                r##"<saml:Assertion ID="_a"><saml:Subject>{}</saml:Subject></saml:Assertion>"##,
                signature("#_a")
            )),
            // No assertion at all.
            response("<saml:Issuer>idp</saml:Issuer>"),
        ];
        for (index, case) in cases.iter().enumerate() {
            assert!(check_response(case).is_err(), "case {index} passed");
        }
    }

    #[test]
    fn doctype_comments_and_entities_are_refused() {
        let laughs = format!(
            r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>{}"#,
            &response("<saml:Assertion ID=\"_a\">&b;</saml:Assertion>")[21..]
        );
        assert!(check_response(&laughs).unwrap_err().contains("DOCTYPE"));
        let comment = response(
            r#"<saml:Assertion ID="_a"><saml:Subject><saml:NameID>alice@partner.example<!---->.evil</saml:NameID></saml:Subject></saml:Assertion>"#,
        );
        assert!(check_response(&comment).unwrap_err().contains("comment"));
        let entity = response(r#"<saml:Assertion ID="_a">&evil;</saml:Assertion>"#);
        assert!(check_response(&entity).is_err());
        let pi = response(r#"<?evil?><saml:Assertion ID="_a"/>"#);
        assert!(check_response(&pi).is_err());
        assert!(check_plain("<a><!-- fine in metadata --></a>").is_ok());
        assert!(check_plain("<!DOCTYPE a><a/>").is_err());
    }

    #[test]
    fn namespace_and_id_tricks_are_refused() {
        // A signature libxml2 sees (the reference expands) and a naive reader not.
        let hidden = response(&format!(
            r##"<x:Signature xmlns:x="http://www.w3.org/2000/09/xmldsig&#35;"><x:SignedInfo><x:Reference URI="file:///dev/zero"/></x:SignedInfo></x:Signature>{}<saml:Assertion ID="_a"/>"##,
            signature("#_r")
        ));
        assert!(
            check_response(&hidden)
                .unwrap_err()
                .contains("namespace declaration")
        );
        // The same names in another namespace.
        let other = response(&format!(
            r##"<y:Signature xmlns:y="urn:evil"/><saml:Assertion ID="_a">{}</saml:Assertion>"##,
            signature("#_a")
        ));
        assert!(
            check_response(&other)
                .unwrap_err()
                .contains("another namespace")
        );
        let evil_assertion = response(&format!(
            r##"<e:Assertion xmlns:e="urn:evil" ID="_e"/><saml:Assertion ID="_a">{}</saml:Assertion>"##,
            signature("#_a")
        ));
        assert!(check_response(&evil_assertion).is_err());
        // IDs libxml2 knows and this check would not.
        for id in [r#"xml:id="_x""#, r#"xmlns:p="urn:p" p:ID="_x""#] {
            let xml = response(&format!(
                r#"<saml:Assertion ID="_a"><saml:Subject {id}/></saml:Assertion>"#
            ));
            assert!(check_response(&xml).unwrap_err().contains("prefix"), "{id}");
        }
        // Objects and manifests inside a signature.
        let object = response(&format!(
            r##"<saml:Assertion ID="_a">{}</saml:Assertion>"##,
            signature("#_a").replace("</ds:Signature>", "<ds:Object/></ds:Signature>")
        ));
        assert!(check_response(&object).is_err());
    }

    #[test]
    fn the_root_must_be_a_response() {
        let assertion =
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a"/>"#;
        assert!(check_response(assertion).is_err());
        let deep = response(&format!(
            "<saml:Assertion ID=\"_a\">{}{}</saml:Assertion>",
            "<x>".repeat(40),
            "</x>".repeat(40)
        ));
        assert!(check_response(&deep).is_err());
    }
}
