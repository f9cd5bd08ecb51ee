//! Elastic Cloud's `cloud_id`: `<name>:<base64 of "host$es_uuid$kibana_uuid">`, the
//! deployment's Elasticsearch endpoint being `https://<es_uuid>.<host>:<port>`.
//!
//! The host may carry a port (`eu-west-1.aws.found.io:9243`), and so may the
//! Elasticsearch id (`<es_uuid>:9243`, which then wins); without one the port is 443.
//! The name before the last `:` is a label for people and is ignored; the Kibana id
//! is optional.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// The Elasticsearch endpoint a `cloud_id` stands for, or why it stands for none.
pub fn decode(cloud_id: &str) -> Result<String, String> {
    let encoded = match cloud_id.rsplit_once(':') {
        Some((_label, encoded)) => encoded,
        None => cloud_id,
    }
    .trim();
    if encoded.is_empty() {
        return Err(
            "nothing after the `:`; copy the whole Cloud ID from the deployment's page".into(),
        );
    }
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')))
        .map_err(|e| {
            format!(
                "the part after the `:` is not base64 ({e}); copy the whole Cloud ID from the deployment's page"
            )
        })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "the decoded Cloud ID is not text; copy it again".to_string())?;
    let mut parts = text.split('$');
    let host = parts.next().unwrap_or_default().trim_end_matches('/');
    let es = parts.next().unwrap_or_default();
    if host.is_empty() || es.is_empty() {
        return Err(format!(
            "the decoded Cloud ID `{text}` is not `host$elasticsearch_id$kibana_id`"
        ));
    }
    let (host, host_port) = split_port(host)?;
    let (es, es_port) = split_port(es)?;
    let port = es_port.or(host_port).unwrap_or(443);
    let url = format!("https://{es}.{host}:{port}");
    match reqwest::Url::parse(&url) {
        Ok(parsed) if parsed.host_str().is_some() => Ok(url),
        _ => Err(format!(
            "the decoded Cloud ID `{text}` does not give a usable host (`{url}`)"
        )),
    }
}

/// `name:port` → (`name`, port); `name` → (`name`, None).
fn split_port(part: &str) -> Result<(&str, Option<u16>), String> {
    match part.rsplit_once(':') {
        Some((name, port)) => match port.parse::<u16>() {
            Ok(port) if port > 0 && !name.is_empty() => Ok((name, Some(port))),
            _ => Err(format!(
                "`{part}` in the decoded Cloud ID has no usable port after its `:`"
            )),
        },
        None => Ok((part, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &str) -> String {
        STANDARD.encode(text)
    }

    #[test]
    fn elastics_published_example_decodes_to_its_endpoint() {
        // The example of Elastic's Beats documentation ("Configure the output for
        // Elasticsearch Service on Elastic Cloud", e.g.
        // https://elastic.co/guide/en/beats/metricbeat/8.7/configure-cloud-id.html),
        // which says the port is 443 when the id names none.
        let id = "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==";
        assert_eq!(
            decode(id).unwrap(),
            "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"
        );
        // The label is optional, and so is the padding.
        let bare = id.split_once(':').unwrap().1;
        assert_eq!(decode(bare).unwrap(), decode(id).unwrap());
        assert_eq!(
            decode(bare.trim_end_matches('=')).unwrap(),
            decode(id).unwrap()
        );
    }

    #[test]
    fn ports_in_the_host_or_the_elasticsearch_id_are_kept() {
        let host_port = format!("name:{}", encode("eu-west-1.aws.found.io:9243$abc$def"));
        assert_eq!(
            decode(&host_port).unwrap(),
            "https://abc.eu-west-1.aws.found.io:9243"
        );
        let es_port = format!(
            "name:{}",
            encode("eu-west-1.aws.found.io:9243$abc:9400$def")
        );
        assert_eq!(
            decode(&es_port).unwrap(),
            "https://abc.eu-west-1.aws.found.io:9400"
        );
        // Without the Kibana id.
        let no_kibana = format!("name:{}", encode("example.found.io$abc"));
        assert_eq!(
            decode(&no_kibana).unwrap(),
            "https://abc.example.found.io:443"
        );
    }

    #[test]
    fn malformed_ids_say_why() {
        let cases = [
            ("name:", "nothing after the `:`"),
            ("name:not*base64", "is not base64"),
            (
                &format!("n:{}", encode("only-a-host")),
                "is not `host$elasticsearch_id$kibana_id`",
            ),
            (
                &format!("n:{}", encode("$abc$def")),
                "is not `host$elasticsearch_id$kibana_id`",
            ),
            (
                &format!("n:{}", encode("host:http$abc$def")),
                "no usable port",
            ),
            (
                &format!("n:{}", encode("bad host$abc$def")),
                "does not give a usable host",
            ),
        ];
        for (id, why) in cases {
            let e = decode(id).unwrap_err();
            assert!(e.contains(why), "{id}: {e}");
        }
    }
}
