//! Unit tests of the lease arithmetic and bookkeeping.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn configs(joint: &[&[NodeId]]) -> Vec<BTreeSet<NodeId>> {
    joint.iter().map(|c| c.iter().copied().collect()).collect()
}

fn spans(pairs: &[(NodeId, u64)]) -> BTreeMap<NodeId, Duration> {
    pairs.iter().map(|(id, s)| (*id, ms(*s))).collect()
}

/// Aion's Raft timing: election timeout 500..1000 ms, so a 1 s leader lease.
fn timing() -> LeaseTiming {
    LeaseTiming::of(&crate::shards::default_raft_config())
}

#[test]
fn timing_follows_the_raft_config_and_caps_below_the_election_timeout() {
    let t = timing();
    assert_eq!(t.leader_lease, ms(1000));
    assert_eq!(t.cap, ms(400), "min(1000/2, 500*0.8)");
    let slow = openraft::Config { election_timeout_min: 3000, election_timeout_max: 4000, ..Default::default() };
    assert_eq!(LeaseTiming::of(&slow).cap, ms(2000), "half the lease when elections are slow");
}

#[test]
fn peer_span_shrinks_the_lease_by_age_and_margin() {
    let t = timing();
    assert_eq!(t.peer_span(ms(0), None), Some(ms(400)), "capped");
    assert_eq!(t.peer_span(ms(500), None), Some(ms(300)), "800 - 500");
    assert_eq!(t.peer_span(ms(800), None), None, "nothing left of 80 % of the lease");
    assert_eq!(t.peer_span(ms(5000), None), None);
    assert_eq!(t.peer_span(ms(100), Some(ms(500))), Some(ms(300)), "a peer's shorter lease wins: 400 - 100");
    assert_eq!(t.peer_span(ms(100), Some(ms(9000))), Some(ms(400)), "a longer peer lease is not trusted");
}

#[test]
fn lease_needs_a_quorum_and_takes_the_weakest_member_it_needs() {
    let three = configs(&[&[1, 2, 3]]);
    assert_eq!(lease_span(&three, 1, &spans(&[]), ms(400)), None, "the leader alone is 1 of 3");
    assert_eq!(lease_span(&three, 1, &spans(&[(2, 300)]), ms(400)), Some(ms(300)));
    assert_eq!(lease_span(&three, 1, &spans(&[(2, 100), (3, 350)]), ms(400)), Some(ms(350)), "the better peer suffices");
    assert_eq!(lease_span(&three, 1, &spans(&[(2, 900)]), ms(400)), Some(ms(400)), "never past the cap");
    assert_eq!(lease_span(&three, 1, &spans(&[(2, 0)]), ms(400)), None, "a zero span is no lease");

    let five = configs(&[&[1, 2, 3, 4, 5]]);
    assert_eq!(lease_span(&five, 1, &spans(&[(2, 300)]), ms(400)), None, "2 of 5");
    assert_eq!(lease_span(&five, 1, &spans(&[(2, 300), (4, 100), (5, 200)]), ms(400)), Some(ms(200)), "leader + the two best");

    assert_eq!(lease_span(&[], 1, &spans(&[(2, 300)]), ms(400)), None, "no membership, no lease");
}

#[test]
fn lease_in_a_joint_config_needs_a_quorum_of_each() {
    let joint = configs(&[&[1, 2, 3], &[4, 5, 6]]);
    assert_eq!(lease_span(&joint, 1, &spans(&[(2, 300), (3, 300)]), ms(400)), None, "the new config has no span");
    assert_eq!(lease_span(&joint, 1, &spans(&[(2, 300), (4, 250)]), ms(400)), None, "1 of the new config's 3");
    let got = lease_span(&joint, 1, &spans(&[(2, 300), (4, 250), (5, 100), (6, 200)]), ms(400));
    assert_eq!(got, Some(ms(200)), "old: 1+2; new: 4 and 6 (the second best of the new config)");
}

#[test]
fn a_peer_without_an_age_counts_for_the_read_but_not_the_lease() {
    // `spans` is built only from peers that reported an age: peer 3 granted
    // without one, so it is not in the map.
    let three = configs(&[&[1, 2, 3]]);
    let granted = BTreeSet::from([3]);
    assert!(is_quorum(&three, 1, |id| granted.contains(id)), "the read is confirmed");
    assert_eq!(lease_span(&three, 1, &spans(&[]), ms(400)), None, "but no lease");
}

#[test]
fn a_lease_is_only_for_its_leader_id_and_membership_and_expires() {
    let table = LeaseTable::default();
    let joint = configs(&[&[1, 2, 3]]);
    let leader = LeaderId::new(4, 1);
    let t0 = Instant::now();
    assert!(!table.valid(7, &leader, &joint, t0), "no lease yet");
    table.extend(7, leader, &joint, t0 + ms(300));
    assert!(table.valid(7, &leader, &joint, t0));
    assert!(table.valid(7, &leader, &joint, t0 + ms(299)));
    assert!(!table.valid(7, &leader, &joint, t0 + ms(300)), "expired at `until`");
    assert!(!table.valid(8, &leader, &joint, t0), "another shard");
    assert!(!table.valid(7, &LeaderId::new(5, 1), &joint, t0), "a new term");
    assert!(!table.valid(7, &LeaderId::new(4, 2), &joint, t0), "another leader");
    assert!(!table.valid(7, &leader, &configs(&[&[1, 2, 3], &[1, 2, 4]]), t0), "membership changed");

    table.extend(7, leader, &joint, t0 + ms(100));
    assert!(table.valid(7, &leader, &joint, t0 + ms(200)), "a shorter lease does not cut a longer one");
    table.extend(7, leader, &joint, t0 + ms(500));
    assert!(table.valid(7, &leader, &joint, t0 + ms(400)), "a later one extends it");
    table.extend(7, LeaderId::new(5, 1), &joint, t0 + ms(50));
    assert!(!table.valid(7, &leader, &joint, t0), "a new term's lease replaces the old term's");
    assert!(table.valid(7, &LeaderId::new(5, 1), &joint, t0));
}

#[test]
fn vote_hold_lasts_the_leader_lease_plus_margin() {
    let hold = VoteHold::starting_now();
    let t = timing();
    let start = hold.started;
    assert!(hold.holds(&t, start));
    assert!(hold.holds(&t, start + ms(1199)));
    assert!(!hold.holds(&t, start + ms(1200)));
}

#[test]
fn counters_count_by_way_of_confirmation() {
    let s = ReadIndexState::new();
    let before = PROCESS_READ_STATS.counts();
    s.count_read(ReadVia::Lease);
    s.count_read(ReadVia::Lease);
    s.count_read(ReadVia::Confirm);
    s.count_read(ReadVia::Linearize);
    s.count_confirm_calls(2);
    assert_eq!(s.stats.counts(), ReadIndexCounts { lease: 2, confirm: 1, linearize: 1, confirm_calls: 2 });
    let after = PROCESS_READ_STATS.counts();
    assert!(after.lease >= before.lease + 2 && after.confirm_calls >= before.confirm_calls + 2, "process-wide too");
}
