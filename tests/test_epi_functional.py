"""Estimators against plain per-step reference loops."""

import copy

import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.loss_functional import sac as lf_sac
from machina.traj import Traj, _scan
from machina.traj import epi_functional as ef
from machina.traj._scan import reverse_discounted_sum
from machina.utils.ends import terminated

GAMMAS = [0.0, 0.5, 0.99, 1.0]
LAMS = [0.0, 0.7, 0.95, 1.0]


class LinearVf(torch.nn.Module):
    """V(s) = w . s + b; enough to make every bootstrap value distinct."""

    rnn = False

    def __init__(self, ob_dim: int):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(ob_dim, 1)

    def forward(self, obs, hs=None, h_masks=None):
        vs = self.lin(obs).squeeze(-1)
        return vs, dict(mean=vs)


def ref_v(vf, ob):
    with torch.no_grad():
        return float(vf(torch.as_tensor(ob[None]))[0][0])


def ref_rets(epi, gamma, vf):
    """Monte-Carlo returns, one step at a time, bootstrapped only when truncated."""
    length = len(epi["rews"])
    bootstrap = epi["truncs"][-1] and not epi["terms"][-1]
    nxt = ref_v(vf, epi["next_obs"][-1]) if bootstrap else 0.0
    rets = np.zeros(length)
    for t in reversed(range(length)):
        nxt = epi["rews"][t] + gamma * nxt
        rets[t] = nxt
    return rets


def ref_lambda_rets(epi, gamma, lam, vf):
    """TD(lambda) returns step by step: G[t] = r[t] + gamma * ((1 - lam) * V(s[t+1]) +
    lam * G[t+1]), and at the end r + gamma * V(s_T) unless terminated."""
    length = len(epi["rews"])
    rets = np.zeros(length)
    for t in reversed(range(length)):
        if t == length - 1:
            rets[t] = epi["rews"][t]
            if not epi["terms"][t]:
                rets[t] += gamma * ref_v(vf, epi["next_obs"][t])
        else:
            next_v = ref_v(vf, epi["obs"][t + 1])
            rets[t] = epi["rews"][t] + gamma * ((1 - lam) * next_v + lam * rets[t + 1])
    return rets


def ref_advs(epi, gamma, lam, vf):
    """GAE as in Schulman et al. (2016): delta recursion, step by step."""
    length = len(epi["rews"])
    vs = [ref_v(vf, epi["obs"][t]) for t in range(length)]
    advs = np.zeros(length)
    adv = 0.0
    for t in reversed(range(length)):
        if t == length - 1:
            next_v = 0.0 if epi["terms"][t] else ref_v(vf, epi["next_obs"][t])
        else:
            next_v = vs[t + 1]
        delta = epi["rews"][t] + gamma * next_v - vs[t]
        adv = delta + (gamma * lam * adv if t < length - 1 else 0.0)
        advs[t] = adv
    return advs


@pytest.fixture
def epis(rng):
    return make_random_epis(rng, n_epi=40, max_len=25)


SCAN_LENGTHS = [
    [1],
    [1, 1, 1],
    [2, 1, 3],
    [1000],
    [31, 32, 33, 1, 64, 65, 1],  # around the scan's block size
    [5000, 1, 2],  # several levels of blocks
    [1] * 100 + [2] * 100,
    list(np.random.default_rng(1).integers(1, 70, size=50)),
    list(np.random.default_rng(2).integers(1, 3000, size=20)),
]


@pytest.mark.parametrize("lengths", SCAN_LENGTHS, ids=range(len(SCAN_LENGTHS)))
@pytest.mark.parametrize("decay", [0.0, 1e-12, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("blocked_only", [False, True])
def test_scan_matches_loop_on_single_and_long_episodes(
    rng, monkeypatch, lengths, decay, blocked_only
):
    if blocked_only:  # no plain loop for short inputs, even in the scan's own recursion
        monkeypatch.setattr(_scan, "_LOOP_MAX", 0)
    lengths = np.asarray(lengths)
    x = rng.normal(size=lengths.sum())
    out = reverse_discounted_sum(x, decay, lengths)
    ref, start = np.zeros_like(x), 0
    for length in lengths:
        acc = 0.0
        for t in reversed(range(start, start + length)):
            acc = x[t] + decay * acc
            ref[t] = acc
        start += length
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    # In place: the result may overwrite its input.
    inplace = x.copy()
    assert reverse_discounted_sum(inplace, decay, lengths, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, out)


def test_scan_refuses_bad_shapes():
    with pytest.raises(ValueError, match="x: expected shape"):
        reverse_discounted_sum(np.zeros(4), 0.9, np.array([2, 3]))
    with pytest.raises(ValueError, match="out: expected a float64"):
        reverse_discounted_sum(np.zeros(5), 0.9, np.array([2, 3]), out=np.zeros(5, np.float32))


def _as(path, epis):
    """The episodes as the estimators' input: the list itself, or a Traj holding them."""
    if path == "list":
        return epis
    traj = Traj()
    traj.add_epis(epis)
    return traj


def _episodes(data):
    return data.current_epis if isinstance(data, Traj) else data


@pytest.mark.parametrize("path", ["list", "traj"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_compute_rets_matches_reference(epis, gamma, path):
    vf = LinearVf(3)
    before = copy.deepcopy(epis)
    out = _episodes(ef.compute_rets(ef.compute_vs(_as(path, epis), vf), gamma))
    for epi, new in zip(epis, out):
        np.testing.assert_allclose(new["rets"], ref_rets(epi, gamma, vf), rtol=1e-4, atol=1e-4)
        assert new["rets"].dtype == np.float32
    _assert_unchanged(before, epis)


@pytest.mark.parametrize("path", ["list", "traj"])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("lam", LAMS)
def test_compute_advs_matches_reference(epis, gamma, lam, path):
    vf = LinearVf(3)
    before = copy.deepcopy(epis)
    out = _episodes(ef.compute_advs(ef.compute_vs(_as(path, epis), vf), gamma, lam))
    for epi, new in zip(epis, out):
        ref = ref_advs(epi, gamma, lam, vf)
        np.testing.assert_allclose(new["advs"], ref, rtol=1e-4, atol=1e-4)
    _assert_unchanged(before, epis)


@pytest.mark.parametrize("path", ["list", "traj"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_compute_advs_from_vs_alone_matches_0x_loop(rng, lam, path):
    """Episodes given ``vs`` but no ``next_vs`` (machina 0.x's scripts set ``epi['vs']``
    themselves): V(s[t+1]) is the next step's ``vs``, 0 after the last, as 0.x's loop."""
    gamma = 0.9
    epis = make_random_epis(rng, 12)
    for epi in epis:  # every end terminated: nothing needs a next value
        epi["terms"][-1], epi["truncs"][-1] = True, False
        epi["vs"] = rng.normal(size=len(epi["rews"])).astype(np.float32)
    out = _episodes(ef.compute_advs(_as(path, epis), gamma, lam))
    for epi, new in zip(epis, out):
        vs = np.append(epi["vs"].astype(np.float64), 0.0)
        ref, last = np.empty(len(epi["rews"])), 0.0
        for t in reversed(range(len(epi["rews"]))):
            last = epi["rews"][t] + gamma * vs[t + 1] - vs[t] + gamma * lam * last
            ref[t] = last
        np.testing.assert_allclose(new["advs"], ref, rtol=1e-5, atol=1e-5)
    epis[0]["terms"][-1], epis[0]["truncs"][-1] = False, True
    with pytest.raises(KeyError, match="1 truncated episode.*next_vs"):
        ef.compute_advs(_as(path, epis), gamma, lam)


@pytest.mark.parametrize("path", ["list", "traj"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.97])
def test_compute_rets_with_lambda_matches_reference(epis, lam, path):
    """TD(lambda) value targets: the per-step recursion, and GAE's advs + vs."""
    vf = LinearVf(3)
    data = ef.compute_vs(_as(path, epis), vf)
    out = _episodes(ef.compute_advs(ef.compute_rets(data, 0.98, lam), 0.98, lam))
    for epi, new in zip(epis, out):
        ref = ref_lambda_rets(epi, 0.98, lam, vf)
        np.testing.assert_allclose(new["rets"], ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(new["rets"], new["advs"] + new["vs"], rtol=1e-5, atol=1e-5)
    terminated = [epi for epi in epis if epi["terms"][-1]]
    with pytest.raises(KeyError, match=r"compute_rets \(lam < 1\).*compute_vs"):
        ef.compute_rets(terminated, 0.98, 0.9)  # V(next obs) is needed at every step
    with pytest.raises(ValueError, match="lam: expected a float in"):
        ef.compute_rets(data, 0.98, 1.5)


def test_gae_with_lambda_one_is_return_minus_value(epis):
    vf = LinearVf(3)
    out = ef.compute_advs(ef.compute_rets(ef.compute_vs(epis, vf), 0.97), 0.97, 1.0)
    for epi in out:
        np.testing.assert_allclose(epi["advs"], epi["rets"] - epi["vs"], atol=1e-4)


def test_truncation_closed_form():
    """Constant V and reward 1: truncated returns stay at 1 / (1 - gamma), terminated decay."""

    class ConstVf(LinearVf):
        def forward(self, obs, hs=None, h_masks=None):
            vs = torch.full(obs.shape[:1], 1.0 / (1 - 0.9))
            return vs, dict(mean=vs)

    length = 50
    base = dict(
        obs=np.zeros((length, 1), np.float32),
        next_obs=np.zeros((length, 1), np.float32),
        rews=np.ones(length, np.float32),
    )
    end = np.zeros(length, bool)
    end[-1] = True
    trunc = dict(base, terms=np.zeros(length, bool), truncs=end, dones=end)
    term = dict(base, terms=end, truncs=np.zeros(length, bool), dones=end)
    out = ef.compute_advs(ef.compute_rets(ef.compute_vs([trunc, term], ConstVf(1)), 0.9), 0.9, 0.95)
    np.testing.assert_allclose(out[0]["rets"], 10.0, rtol=1e-5)
    np.testing.assert_allclose(out[0]["advs"], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[1]["rets"][-1], 1.0)
    np.testing.assert_allclose(out[1]["rets"][0], (1 - 0.9**length) / (1 - 0.9), rtol=1e-5)


def assert_same_targets(path, epis_a, epis_b):
    """``rets`` and GAE ``advs`` (with next_vs) of two sets of episodes are equal bit for bit."""
    vf = LinearVf(3)
    a, b = (_episodes(ef.compute_advs(ef.compute_rets(ef.compute_vs(_as(path, e), vf), 0.97),
            0.97, 0.9)) for e in (epis_a, epis_b))  # fmt: skip
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["rets"], y["rets"])
        np.testing.assert_array_equal(x["advs"], y["advs"])


@pytest.mark.parametrize("path", ["list", "traj"])
def test_an_end_with_neither_flag_is_a_cut_bootstrapped_as_a_truncation(epis, path):
    """A hand-built rollout segment whose last step has neither terms nor truncs: with
    next_vs it is bootstrapped, exactly as if truncated; without, the estimators refuse it as
    they refuse a truncated one (it was read as terminated: returns silently cut short)."""
    cut = [dict(epi, terms=np.zeros_like(epi["terms"]), truncs=np.zeros_like(epi["truncs"]))
           for epi in epis]  # fmt: skip
    truncated = [dict(epi, truncs=epi["truncs"].copy()) for epi in cut]
    for epi in truncated:
        epi["truncs"][-1] = True
    assert_same_targets(path, cut, truncated)
    n = len(epis)
    with pytest.raises(KeyError, match=rf"{n} truncated episode\(s\) \({n} ending with neither"):
        ef.compute_rets(_as(path, cut), 0.97)
    cut[0]["terms"][-1] = True  # terminated now: one fewer to bootstrap
    with pytest.raises(KeyError, match=rf"{n - 1} truncated episode"):
        ef.compute_advs(_as(path, [dict(e, vs=np.zeros(len(e["rews"]))) for e in cut]), 0.9, 1.0)


@pytest.mark.parametrize("path", ["list", "traj"])
def test_dones_and_truncs_without_terms_bootstrap_the_truncated_ends(epis, path):
    """Episodes recorded with ``dones`` (either end) and ``truncs`` but no ``terms``: a
    truncated end is bootstrapped, as with ``terms`` (it was refused without next_vs, yet
    read as terminated with them); n-step targets alike."""
    for epi in epis:  # ends both terminated and truncated need terms to tell: terminated here
        epi["truncs"] = epi["truncs"] & ~epi["terms"]
    without = [{k: v for k, v in epi.items() if k != "terms"} for epi in epis]
    assert any(epi["truncs"][-1] for epi in epis) and any(epi["terms"][-1] for epi in epis)
    assert_same_targets(path, without, epis)
    # an end with dones unset is a cut there too: refused without next_vs, named
    unset = {
        "dones": np.zeros_like(without[0]["dones"]),
        "truncs": np.zeros_like(without[0]["truncs"]),
    }
    cut = [dict(without[0], **unset)] + without[1:]
    terminated_only = [e for e in cut[1:] if e["dones"][-1] and not e["truncs"][-1]]
    with pytest.raises(KeyError, match=r"1 truncated episode\(s\) \(1 ending with neither"):
        ef.compute_rets(_as(path, cut[:1] + terminated_only), 0.97)
    x, y = (_episodes(ef.compute_nstep(_as(path, e), 0.97, 3)) for e in (without, epis))
    for p, q in zip(x, y):
        np.testing.assert_array_equal(p["nstep_discounts"], q["nstep_discounts"])


def test_every_reader_of_older_flags_takes_truncs_into_account():
    """Without ``terms``: the estimators, SAC's Bellman targets and AIRL's shaping read an end
    that ``truncs`` marks as truncated, ``dones`` alone as terminated (machina 0.x)."""
    dones, truncs = np.array([1, 0, 1, 1], np.float32), np.array([0, 0, 1, 0], bool)
    want = np.array([True, False, False, True])
    np.testing.assert_array_equal(terminated({"dones": dones, "truncs": truncs}), want)
    np.testing.assert_array_equal(terminated({"dones": dones}), dones)
    batch = {"dones": torch.as_tensor(dones), "truncs": torch.as_tensor(truncs)}
    assert torch.equal(lf_sac.with_terms(batch)["terms"], torch.as_tensor(want))
    both = {**batch, "terms": torch.ones(4, dtype=torch.bool)}
    assert lf_sac.with_terms(both)["terms"] is both["terms"]  # terms win


def test_concatenation_equals_each_alone(epis):
    vf = LinearVf(3)
    together = ef.compute_advs(ef.compute_vs(epis, vf), 0.99, 0.95)
    for epi, joint in zip(epis, together):
        alone = ef.compute_advs(ef.compute_vs([epi], vf), 0.99, 0.95)[0]
        np.testing.assert_allclose(alone["advs"], joint["advs"], rtol=1e-5, atol=1e-5)


def test_centerize_and_h_masks(epis):
    vf = LinearVf(3)
    out = ef.compute_h_masks(ef.centerize_advs(ef.compute_advs(ef.compute_vs(epis, vf), 0.9, 0.9)))
    advs = np.concatenate([e["advs"] for e in out])
    assert abs(advs.mean()) < 1e-5 and abs(advs.std() - 1) < 1e-4
    for epi in out:
        expected = np.zeros(len(epi["rews"]), np.float32)
        expected[0] = 1
        np.testing.assert_array_equal(epi["h_masks"], expected)


def test_traj_in_traj_out_leaves_input_untouched(epis):
    vf = LinearVf(3)
    traj = Traj()
    traj.add_epis(epis)
    new = ef.compute_rets(ef.compute_vs(traj, vf), 0.99)
    assert isinstance(new, Traj)
    assert "rets" in new.current_epis[0] and "rets" not in traj.current_epis[0]
    # Unchanged arrays are shared, not copied: the pending columns are the same arrays, and
    # the episodes read back from them are views.
    assert new.pending.columns["obs"] is traj.pending.columns["obs"]
    assert np.shares_memory(new.current_epis[0]["obs"], traj.pending.columns["obs"])
    new.register_epis()
    assert traj.num_step == 0 and new.num_step == sum(len(e["rews"]) for e in epis)


def _pipeline(data, vf):
    with pytest.warns(UserWarning, match="final observation"):
        data = ef.add_next_obs(data)
    data = ef.compute_vs(data, vf)
    data = ef.compute_rets(data, 0.97)
    data = ef.compute_advs(data, 0.97, 0.9)
    data = ef.centerize_advs(data)
    return ef.compute_h_masks(data)


def test_traj_path_equals_list_path_and_leaves_inputs_untouched(epis):
    """Every estimator gives bit-identical results on a Traj and on a list of episodes."""
    vf = LinearVf(3)
    stripped = [{k: v for k, v in e.items() if k != "next_obs"} for e in epis]
    before = copy.deepcopy(stripped)
    traj = Traj()
    traj.add_epis(stripped)
    pending_before = {k: v.copy() for k, v in traj.pending.columns.items()}

    from_list = _pipeline(stripped, vf)
    from_traj = _pipeline(traj, vf)

    assert isinstance(from_list, list) and isinstance(from_traj, Traj)
    assert len(from_traj.current_epis) == len(from_list)
    for a, b in zip(from_list, from_traj.current_epis):
        assert set(a) == set(b)
        for key in a:
            if key in ("a_is", "e_is"):
                assert a[key].keys() == b[key].keys()
                for sub in a[key]:
                    np.testing.assert_array_equal(a[key][sub], b[key][sub])
            else:
                np.testing.assert_array_equal(a[key], b[key])
                assert a[key].dtype == b[key].dtype, key
    # Inputs untouched: the list, its arrays, and the input Traj's pending columns.
    _assert_unchanged(before, stripped)
    assert all("next_obs" not in e and "advs" not in e for e in stripped)
    assert set(traj.pending.columns) == set(pending_before)
    for key, col in pending_before.items():
        np.testing.assert_array_equal(traj.pending.columns[key], col)
    assert "next_obs" not in traj.current_epis[0]
    # The list path shares the arrays it did not change.
    assert from_list[0]["obs"] is stripped[0]["obs"]
    assert from_list[0]["a_is"] is stripped[0]["a_is"]
    # Registering either gives the same columns.
    from_traj.register_epis()
    via_list = Traj()
    via_list.add_epis(from_list)
    via_list.register_epis()
    assert set(via_list.data_map) == set(from_traj.data_map)
    for key, col in via_list.data_map.items():
        assert torch.equal(col, from_traj.data_map[key]), key


def test_estimators_refuse_a_traj_without_pending_episodes(epis):
    with pytest.raises(ValueError, match="add_epis"):
        ef.compute_h_masks(Traj())
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    with pytest.raises(ValueError, match="compute_rets.*add_epis"):
        ef.compute_rets(traj, 0.99)
    with pytest.raises(KeyError, match="compute_advs.*pending.*'vs'.*compute_vs"):
        fresh = Traj()
        fresh.add_epis(epis)
        ef.compute_advs(fresh, 0.99, 0.95)


def test_bad_arguments_are_named_not_computed_on(epis):
    with_advs = [dict(e, advs=np.arange(len(e["rews"]), dtype=np.float32)) for e in epis]
    for eps in (-1.0, float("nan"), float("inf")):  # -1 inflated the advantages ~10x
        with pytest.raises(ValueError, match="eps: expected a finite float >= 0"):
            ef.centerize_advs(with_advs, eps=eps)
    ef.centerize_advs(with_advs, eps=0.0)
    # one episode's dict was split by its keys, a Traj failed as 'not iterable'
    with pytest.raises(TypeError, match="epis: expected a list of episode dicts, got dict"):
        ef.train_test_split(epis[0], 0.5)
    traj = Traj()
    traj.add_epis(epis)
    with pytest.raises(TypeError, match=r"got Traj; for a Traj, pass traj.epis\(\)"):
        ef.train_test_split(traj, 0.5)
    assert ef.train_test_split(iter(epis), 0.5)[0] == epis[: len(epis) // 2]

    class TwoValues(torch.nn.Module):  # (B, 2): reshaped, its values misaligned with steps
        def forward(self, obs):
            return obs[:, :2], {}

    with pytest.raises(ValueError, match=r"vf: expected one value per observation.*\(\d+, 2\)"):
        ef.compute_vs(epis, TwoValues())


def test_missing_keys_name_the_estimator(epis):
    with pytest.raises(KeyError, match="compute_vs"):
        ef.compute_advs(epis, 0.99, 0.95)
    with pytest.raises(KeyError, match="compute_vs"):
        ef.compute_rets(epis, 0.99)  # truncated episodes need next_vs
    with pytest.raises(ValueError, match="gamma"):
        ef.compute_rets([e for e in epis if e["terms"][-1]], 1.5)
    with pytest.raises(TypeError, match="data"):
        ef.compute_h_masks(epis[0])
    empty = {k: (v[:0] if isinstance(v, np.ndarray) else v) for k, v in epis[0].items()}
    with pytest.raises(ValueError, match=r"epis\[1\].*at least one step"):
        ef.compute_rets([epis[0], empty], 0.99)
    short = dict(epis[1], rews=np.zeros(len(epis[1]["rews"]) + 1, np.float32))
    with pytest.raises(ValueError, match=r"epis\[0\]\['truncs'\]: expected a first axis of length"):
        ef.compute_rets([short], 0.99)
    assert ef.compute_h_masks([]) == []
    # episodes without rewards (expert data): estimators that do not read them run
    unrewarded = [
        {k: v for k, v in e.items() if k != "rews"} | {"next_vs": np.zeros(len(e["obs"]))}
        for e in epis[:3]
    ]
    masked = ef.compute_h_masks(unrewarded)
    assert [len(e["h_masks"]) for e in masked] == [len(e["obs"]) for e in unrewarded]
    with pytest.raises(KeyError, match=r"compute_rets: epis\[0\] has no 'rews'"):
        ef.compute_rets(unrewarded, 1.0, lam=0.5)  # next_vs is there: rews is missing
    with pytest.raises(KeyError, match=r"epis\[0\]: expected an episode dict with 'rews' or"):
        ef.compute_h_masks([{"acs": np.zeros(3)}])


def test_add_next_obs_keeps_sampler_next_obs(epis):
    out = ef.add_next_obs(epis)
    assert out[0]["next_obs"] is epis[0]["next_obs"]
    stripped = [{k: v for k, v in e.items() if k != "next_obs"} for e in epis]
    with pytest.warns(UserWarning, match="final observation"):
        rebuilt = ef.add_next_obs(stripped)
    for epi, new in zip(epis, rebuilt):
        np.testing.assert_array_equal(new["next_obs"][:-1], epi["next_obs"][:-1])


def test_recurrent_vf_runs_each_episode_from_a_fresh_state(epis, monkeypatch):
    # Several chunks of episodes, the last one smaller.
    monkeypatch.setattr(ef, "_VF_RNN_CHUNK", 7)

    class SumVf(torch.nn.Module):
        """V = running sum of obs[:, 0] since the episode start: depends on the hidden state."""

        rnn = True

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def reset(self):
            pass

        def forward(self, obs, hs=None, h_masks=None):
            acc, out = torch.zeros(obs.shape[1]), []
            for t in range(obs.shape[0]):
                acc = acc * (1 - h_masks[t, :, 0]) + obs[t, :, 0] * self.w
                out.append(acc)
            vs = torch.stack(out)
            return vs, dict(mean=vs)

    out = ef.compute_vs(epis, SumVf())
    traj = Traj()
    traj.add_epis(epis)
    via_traj = ef.compute_vs(traj, SumVf()).current_epis
    for epi, new, other in zip(epis, out, via_traj):
        np.testing.assert_array_equal(new["vs"], other["vs"])
        np.testing.assert_array_equal(new["next_vs"], other["next_vs"])
        np.testing.assert_allclose(new["vs"], np.cumsum(epi["obs"][:, 0]), rtol=1e-5, atol=1e-5)
        final = epi["obs"][:, 0].sum() + epi["next_obs"][-1, 0]
        np.testing.assert_allclose(new["next_vs"][-1], final, rtol=1e-5, atol=1e-5)


def _assert_unchanged(before, after):
    for b, a in zip(before, after):
        assert set(b) == set(a)
        for k in b:
            if isinstance(b[k], dict):
                continue
            np.testing.assert_array_equal(b[k], a[k])
