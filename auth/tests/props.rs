//! Property tests on the public API: the parser never panics, and whatever
//! it accepts can be decided on without panicking.

#[path = "common/helpers.rs"]
mod helpers;

use proptest::prelude::*;
use starling_auth::{Action, Policy};

const FRAGMENTS: [&str; 16] = [
    "version = 1\n",
    "[[rule]]\n",
    "id = \"r\"\n",
    "effect = \"allow\"\n",
    "effect = \"deny\"\n",
    "action = [\"publish\", \"subscribe\"]\n",
    "who = \"*\"\n",
    "topic = \"a/${client_id}/#\"\n",
    "topic = \"#\"\n",
    "[[identity]]\n",
    "name = \"n\"\n",
    "class = \"c\"\n",
    "cert_cn = \"n\"\n",
    "[zones]\nz = [\"10.0.0.0/8\"]\n",
    "zones = [\"z\"]\n",
    "[anonymous]\nenabled = true\nclass = \"g\"\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in ".{0,400}") {
        let _ = Policy::parse(&s);
        let _ = Policy::check(&s);
    }

    #[test]
    fn parser_never_panics_on_policy_shaped_text(parts in prop::collection::vec(0..FRAGMENTS.len(), 0..24), cut in 0usize..2000) {
        let text: String = parts.iter().map(|i| FRAGMENTS[*i]).collect();
        let end = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        if let Ok((p, _)) = Policy::parse(&text[..end]) {
            let _ = p.run_tests();
            if let Some(pr) = p.principal("n", Some("n"), None).or_else(|| p.principal("anonymous", None, None)) {
                for a in Action::ALL {
                    for t in ["a/n/x", "#", "$share/g/a/#", "", "a/+/#", "$SYS/x"] {
                        let r = helpers::req(&pr, "n", a, t);
                        let _ = p.decide(&r);
                        let _ = p.explain(&r).to_string();
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_topics_and_client_ids_never_panic(topic in ".{0,64}", cid in ".{0,16}") {
        let pol = helpers::with_rules("[[rule]]\nid = \"o\"\neffect = \"allow\"\naction = [\"publish\", \"subscribe\"]\nwho = \"*\"\ntopic = \"dev/${client_id}/#\"\n");
        let p = pol.principal("u", None, Some("u")).unwrap();
        for a in Action::ALL {
            let d = pol.decide(&helpers::req(&p, &cid, a, &topic));
            if d.allowed && a != Action::Connect {
                // Only the literal own level is ever granted.
                prop_assert!(topic.starts_with(&format!("dev/{cid}")), "{a} {topic:?} as {cid:?}");
                prop_assert!(starling_auth::valid_level_value(&cid));
            }
        }
    }
}
