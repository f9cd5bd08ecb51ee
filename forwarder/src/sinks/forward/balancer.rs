//! Which server gets the next chunk: smooth weighted round robin over the available
//! servers, primaries first, standbys only when no primary is available. When the
//! server whose turn it is has no room (its `max_in_flight` chunks await acks), the
//! next chunk waits for it.
//!
//! Smooth weighted round robin (as in nginx): every pick, each candidate's running
//! score grows by its weight; the highest score wins and pays back the total of the
//! candidates' weights. Over any run of picks each server gets its share of the
//! weights, interleaved rather than in bursts (weights 5:1:1 give a a b a c a a, not
//! a a a a a b c).

/// What the balancer needs to know about one server at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its weight.
    pub weight: u32,
    /// A standby server.
    pub standby: bool,
    /// Marked up by the failure detector.
    pub available: bool,
    /// Has room for another chunk in flight.
    pub has_room: bool,
}

/// The running scores, one per server, in the same order as the candidates.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    scores: Vec<i64>,
}

/// Whether standbys are in use: no primary is available.
pub fn standbys_active(candidates: &[Candidate]) -> bool {
    !candidates
        .iter()
        .any(|c| c.available && !c.standby && c.weight > 0)
}

impl Balancer {
    /// A balancer for `n` servers.
    pub fn new(n: usize) -> Self {
        Self { scores: vec![0; n] }
    }

    /// Follows a change of the server list: scores of kept servers move with them
    /// (`kept[i]` is the old index of new server `i`, if it existed).
    pub fn reindex(&mut self, kept: &[Option<usize>]) {
        let old = std::mem::take(&mut self.scores);
        self.scores = kept
            .iter()
            .map(|k| k.and_then(|i| old.get(i).copied()).unwrap_or(0))
            .collect();
    }

    /// The server for the next chunk, or `None` when there is none available, or when
    /// the one whose turn it is has no room: the chunk then waits for it, so that
    /// chunks follow the weights exactly (as in Fluentd) instead of drifting to
    /// whichever server acks fastest.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        if self.scores.len() != candidates.len() {
            self.scores.resize(candidates.len(), 0);
        }
        let standby = standbys_active(candidates);
        let eligible = |c: &Candidate| c.available && c.weight > 0 && c.standby == standby;
        let total: i64 = candidates
            .iter()
            .filter(|c| eligible(c))
            .map(|c| i64::from(c.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in candidates.iter().enumerate() {
            if !eligible(c) {
                continue;
            }
            let score = self.scores[i] + i64::from(c.weight);
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        let (chosen, _) = best?;
        if !candidates[chosen].has_room {
            return None;
        }
        for (i, c) in candidates.iter().enumerate() {
            if eligible(c) {
                self.scores[i] += i64::from(c.weight);
            }
        }
        self.scores[chosen] -= total;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(weight: u32) -> Candidate {
        Candidate {
            weight,
            standby: false,
            available: true,
            has_room: true,
        }
    }

    fn picks(b: &mut Balancer, cs: &[Candidate], n: usize) -> Vec<usize> {
        (0..n).map(|_| b.pick(cs).unwrap()).collect()
    }

    #[test]
    fn weights_are_honoured_smoothly() {
        let cs = [up(5), up(1), up(1)];
        let mut b = Balancer::new(3);
        assert_eq!(picks(&mut b, &cs, 7), [0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0; 3];
        for i in picks(&mut b, &cs, 700) {
            counts[i] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn equal_weights_alternate() {
        let cs = [up(60), up(60), up(60)];
        let mut b = Balancer::new(3);
        assert_eq!(picks(&mut b, &cs, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn down_or_full_servers_are_skipped_and_standbys_wait_for_all_primaries() {
        let standby = Candidate {
            standby: true,
            ..up(60)
        };
        let mut cs = [up(60), up(60), standby];
        let mut b = Balancer::new(3);
        cs[0].available = false;
        assert_eq!(
            picks(&mut b, &cs, 3),
            [1, 1, 1],
            "one primary left: no standby"
        );
        cs[1].has_room = false;
        assert_eq!(b.pick(&cs), None, "the primary is up but busy: wait for it");
        cs[1].available = false;
        assert!(standbys_active(&cs));
        assert_eq!(picks(&mut b, &cs, 2), [2, 2], "every primary down: standby");
        cs[0].available = true;
        assert_eq!(b.pick(&cs), Some(0), "a primary back: standby idle again");
        let zero = [up(0), up(1)];
        assert_eq!(picks(&mut Balancer::new(2), &zero, 3), [1, 1, 1]);
    }

    #[test]
    fn reindex_keeps_scores_of_kept_servers() {
        let cs = [up(1), up(1)];
        let mut b = Balancer::new(2);
        assert_eq!(b.pick(&cs), Some(0));
        // Server 0 disappears, a new one comes after the old server 1.
        b.reindex(&[Some(1), None]);
        assert_eq!(b.pick(&cs), Some(0), "old server 1 had the higher score");
    }
}
