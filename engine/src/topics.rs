//! Topic names and the rule of which kind travels on which topic.

use byzgossip_crypto::NetworkId;

/// Longest application topic name.
pub const MAX_TOPIC_LEN: usize = 64;

/// Topic names: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(format!("topic {topic:?} must be 1-{MAX_TOPIC_LEN} characters of A-Z a-z 0-9 . _ -")) }
}

/// Gossipsub topic names for one network (its id is part of every name, so two testnets on
/// one machine never mix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics of the network `network`.
    pub fn new(network: &NetworkId) -> Self {
        Self { prefix: format!("byzgossip/{}", &network.to_hex()[..16]) }
    }

    /// The Bracha topic (SEND, ECHO, READY, evidence).
    pub fn bracha(&self) -> String {
        format!("{}/bracha", self.prefix)
    }

    /// The certified topic: members announce deliveries with their certificates to the
    /// nodes outside the committee (`crate::observer`); only observers subscribe.
    pub fn certified(&self) -> String {
        format!("{}/certified", self.prefix)
    }

    /// Whether `wire` is the certified topic.
    pub fn is_certified(&self, wire: &str) -> bool {
        wire.strip_prefix(&self.prefix) == Some("/certified")
    }

    /// The wire topic of an application gossip topic.
    pub fn gossip(&self, topic: &str) -> String {
        format!("{}/gossip/{topic}", self.prefix)
    }

    /// The application topic name of a wire topic, if it is one of ours.
    pub fn app_topic<'a>(&self, wire: &'a str) -> Option<&'a str> {
        wire.strip_prefix(&self.prefix)?.strip_prefix("/gossip/")
    }

    /// Whether `wire` is the Bracha topic.
    pub fn is_bracha(&self, wire: &str) -> bool {
        wire.strip_prefix(&self.prefix) == Some("/bracha")
    }

    /// `bracha`, `certified` or `gossip`: the traffic label of a wire topic (three values, so
    /// a metric's cardinality stays fixed whatever topics peers send on).
    pub fn label(&self, wire: &str) -> &'static str {
        if self.is_bracha(wire) {
            "bracha"
        } else if self.is_certified(wire) {
            "certified"
        } else {
            "gossip"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked_and_mapped_back() {
        let topics = Topics::new(&NetworkId([1; 32]));
        assert!(check_topic_name("chat.v1").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("a/b").is_err());
        assert!(check_topic_name(&"x".repeat(65)).is_err());
        let wire = topics.gossip("chat");
        assert_eq!(topics.app_topic(&wire), Some("chat"));
        assert_eq!(topics.app_topic(&topics.bracha()), None);
        assert!(topics.is_bracha(&topics.bracha()));
        assert!(!topics.is_bracha(&Topics::new(&NetworkId([2; 32])).bracha()), "another network's topic");
        assert_eq!(topics.label(&wire), "gossip");
        assert!(topics.is_certified(&topics.certified()) && !topics.is_bracha(&topics.certified()));
        assert_eq!(topics.label(&topics.certified()), "certified");
        assert_eq!(topics.app_topic(&topics.certified()), None);
    }
}
