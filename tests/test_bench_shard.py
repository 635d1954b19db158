"""Sharing configurations among ranks: the LPT assignment, the rough cost model, CPU shares."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomeasure.bench import distributed, shard
from ecomeasure.bench.runner import Protocol
from ecomeasure.bench.shard import ConfigKey

KEYS = [ConfigKey("m", q, bs) for q in ("fp16", "int8") for bs in (1, 2, 4, 8)]


def test_every_key_goes_to_exactly_one_rank_in_sweep_order():
    shares = shard.assign(KEYS, 3, lambda k: float(k.batch_size))
    assert sorted(k for share in shares for k in share) == sorted(KEYS)
    for share in shares:
        assert share == [k for k in KEYS if k in share]  # fp16 still before int8, model loads grouped


def test_longest_first_balances_where_dealing_in_order_does_not():
    # Costs 1,1,1,1,4 in sweep order: LPT gives {4} and {1,1,1,1}; each key to the least
    # loaded rank in sweep order gives 2+4 and 2, round robin 1+1+4 and 2.
    costs = {ConfigKey("m", "fp16", bs): c for bs, c in zip((1, 2, 3, 4, 5), (1, 1, 1, 1, 4))}
    shares = shard.assign(list(costs), 2, costs.__getitem__)
    assert sorted(sum(costs[k] for k in share) for share in shares) == [4, 4]


def test_assignment_is_deterministic_and_ties_go_to_the_lowest_rank():
    shares = shard.assign(KEYS, 2, lambda k: 1.0)
    assert [set(s) for s in shard.assign(KEYS[::-1], 2, lambda k: 1.0)] == [set(s) for s in shares]
    assert shard.assign(KEYS[:1], 4, lambda k: 1.0) == [KEYS[:1], [], [], []]
    with pytest.raises(ValueError):
        shard.assign(KEYS, 0, lambda k: 1.0)


def test_cost_model_follows_its_stated_factors():
    protocol = Protocol(new_tokens=64, warmup=1, warmup_tokens=16, iterations=5, idle_s=5.0)
    fixed = shard.SETUP_S + protocol.idle_s

    def decode(model, quant, bs):
        return shard.expected_cost_s(ConfigKey(model, quant, bs), protocol) - fixed

    assert decode("mistral", "int8", 1) == pytest.approx(3.0 * decode("mistral", "fp16", 1))
    assert decode("mistral", "fp16", 1) > 2 * decode("tinyllama", "fp16", 1)
    assert decode("mistral", "fp16", 8) > decode("mistral", "fp16", 1)
    assert decode("some/unlisted-model", "fp16", 1) > 0
    assert shard.regime_factor("eager", 1) == 1.0
    assert shard.regime_factor("graph", 1) == pytest.approx(1 / shard.GRAPH_SPEEDUP_AT_BS1)
    assert shard.regime_factor("graph", 1) < shard.regime_factor("graph", 8) < 1.0
    # int8 cannot be captured: in the graph regime it ends at the capture, cheaper than anything
    graph_int8 = shard.expected_cost_s(ConfigKey("mistral", "int8", 1, "graph"), protocol)
    assert graph_int8 == shard.SETUP_S
    assert graph_int8 < shard.expected_cost_s(ConfigKey("tinyllama", "fp16", 1, "graph"), protocol)


@pytest.mark.parametrize("cpus, ranks", [(list(range(16)), 2), (list(range(16)), 3), ([4, 5, 6, 7], 4), ([0, 1], 4)])
def test_cpu_shares_are_disjoint_unless_there_are_too_few_cores(cpus, ranks):
    shares = [distributed.cpu_share(cpus, r, ranks) for r in range(ranks)]
    assert all(share and set(share) <= set(cpus) for share in shares)
    if len(cpus) >= ranks:
        assert len({c for share in shares for c in share}) == sum(map(len, shares))
        assert min(map(len, shares)) == len(cpus) // ranks


def test_unfinished_ranks_are_those_whose_run_file_does_not_say_finished(tmp_path):
    prefix = tmp_path / "run-20260101T000000Z"
    distributed.run_file(prefix, 0).write_text(json.dumps({"finished_utc": "x"}))
    distributed.run_file(prefix, 1).write_text(json.dumps({"started_utc": "x"}))
    distributed.run_file(prefix, 3).write_text("{torn")
    assert distributed.unfinished_ranks(prefix, 4) == [1, 2, 3]


def test_the_regimes_of_one_configuration_stay_on_one_rank():
    keys = [ConfigKey(m, "fp16", 1, r) for m in ("a", "b", "c") for r in ("eager", "graph")]
    cost = {"a": 5.0, "b": 3.0, "c": 2.0}
    shares = shard.assign(keys, 2, lambda k: cost[k.model] * (1 if k.regime == "eager" else 0.5))
    assert sorted(k for share in shares for k in share) == sorted(keys)  # each exactly once
    for share in shares:
        assert {(k.model, k.regime) for k in share} == {(m, r) for m in {k.model for k in share}
                                                        for r in ("eager", "graph")}
    assert {k.model for k in shares[0]} == {"a"} and {k.model for k in shares[1]} == {"b", "c"}


def _finish_s(shares, cost, load_s):
    """Each rank's expected busy time: its configurations, and a load per (model, quant) it holds."""
    return [sum(map(cost, share)) + sum(load_s(*mq) for mq in {k[:2] for k in share}) for share in shares]


def test_a_models_batch_sizes_stay_on_the_rank_that_loaded_it_when_that_finishes_sooner():
    # a@4 costs 3, b@1 2, a@1 1.5. Without loads LPT sends a@1 to the idler rank (3 | 3.5);
    # with a 2 s load, moving a@1 there would load `a` twice: 6.5 | 4 beats 5 | 7.5.
    cost = {ConfigKey("a", "fp16", 4): 3.0, ConfigKey("b", "fp16", 1): 2.0, ConfigKey("a", "fp16", 1): 1.5}
    apart = shard.assign(list(cost), 2, cost.__getitem__)
    assert {k.model for k in apart[1]} == {"a", "b"}
    together = shard.assign(list(cost), 2, cost.__getitem__, lambda m, q: 2.0)
    assert [{k.model for k in share} for share in together] == [{"a"}, {"b"}]
    assert max(_finish_s(together, cost.__getitem__, lambda m, q: 2.0)) == 6.5


def test_balance_still_splits_a_model_when_its_load_is_cheap():
    keys = [ConfigKey("a", "int8", bs) for bs in (1, 2, 4, 8)]
    shares = shard.assign(keys, 2, lambda k: 10.0, lambda m, q: 1.0)
    assert sorted(map(len, shares)) == [2, 2]
    assert _finish_s(shares, lambda k: 10.0, lambda m, q: 1.0) == [21.0, 21.0]


def test_load_model_grows_with_size_and_with_quantization_on_load():
    assert shard.expected_load_s("mistral", "fp16") > 2 * shard.expected_load_s("tinyllama", "fp16")
    assert shard.expected_load_s("mistral", "int8_pure") > shard.expected_load_s("mistral", "nf4") \
        > shard.expected_load_s("mistral", "fp16") > 0
    assert shard.expected_load_s("mistral", "unknown") == shard.expected_load_s("mistral", "fp16")


def test_moves_gather_a_models_batch_sizes_where_lpt_alone_splits_them():
    # The scaling sweep's shape: 9 (model, quant) x 2 batch sizes, alike in cost (10 s, 1 s loads).
    # Greedy LPT deals the two batch sizes of each model to alternate ranks (9 loads each, 99 s);
    # the best plan keeps 4 models whole on each rank and splits one: 90 s + 5 loads = 95 s.
    keys = [ConfigKey(m, q, bs, "graph") for m in "abc" for q in ("fp16", "nf4", "int8_pure") for bs in (1, 4)]
    shares = shard.assign(keys, 2, lambda k: 10.0, lambda m, q: 1.0)
    assert _finish_s(shares, lambda k: 10.0, lambda m, q: 1.0) == [95.0, 95.0]
    split = {k[:2] for k in shares[0]} & {k[:2] for k in shares[1]}
    assert len(split) == 1


costs_s = st.integers(min_value=1, max_value=60_000).map(lambda ms: ms / 1000)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(("fp16", "nf4", "int8")),
                          st.sampled_from((1, 2, 4, 8)), st.sampled_from(("eager", "graph")), costs_s),
                min_size=1, max_size=24, unique_by=lambda t: t[:4]),
       st.dictionaries(st.sampled_from("abcd"), costs_s), st.integers(min_value=1, max_value=5))
def test_every_plan_is_complete_and_no_longer_than_greedy_lpt(configs, load_by_model, ranks):
    cost = {ConfigKey(*c[:4]): c[4] for c in configs}
    def load_s(model, quant):
        return load_by_model.get(model, 0.0)
    keys = list(cost)
    shares = shard.assign(keys, ranks, cost.__getitem__, load_s)
    assert sorted(k for share in shares for k in share) == sorted(keys)  # each exactly once
    assert all(share == [k for k in keys if k in share] for share in shares)
    for share in shares:  # regimes of one (model, quant, batch size) together
        others = {k[:3] for s in shares if s is not share for k in s}
        assert not others & {k[:3] for k in share}
    longest = max(_finish_s(shares, cost.__getitem__, load_s))
    # never longer than LPT alone (the moves only shorten), never shorter than a perfect split
    units = {}
    for k in keys:
        units[k[:3]] = units.get(k[:3], 0.0) + cost[k]
    busy, held = [0.0] * ranks, [set() for _ in range(ranks)]
    for unit in sorted(units, key=lambda u: (-units[u], u)):
        r = min(range(ranks), key=lambda r: (busy[r] + units[unit] + (0 if unit[:2] in held[r] else load_s(*unit[:2])), r))
        busy[r] += units[unit] + (0 if unit[:2] in held[r] else load_s(*unit[:2]))
        held[r].add(unit[:2])
    assert longest <= max(busy) + 1e-6
    once = sum(cost.values()) + sum(load_s(*g) for g in {k[:2] for k in keys})
    assert longest >= once / ranks - 1e-6
