"""Estimators on lists of episodes: a column an estimator added is read flat by the next
one, and every change to the list or its arrays is seen."""

import random

import numpy as np
import pytest
from conftest import make_random_epis

from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.traj._episodes import Columns


def test_a_column_added_by_an_estimator_is_read_flat_and_equals_the_traj_path(rng):
    epis = make_random_epis(rng, 20)
    for epi in epis:
        epi["advs"] = rng.normal(size=len(epi["rews"])).astype(np.float32)
    as_list = ef.centerize_advs(ef.centerize_advs(epis))
    traj = Traj()
    traj.add_epis(epis)
    as_traj = ef.centerize_advs(ef.centerize_advs(traj)).current_epis
    for a, b in zip(as_list, as_traj):
        np.testing.assert_array_equal(a["advs"], b["advs"])
    # an estimator reads a column an earlier one added as the flat array itself
    assert Columns.of_epis(as_list)["advs"] is as_list[0]["advs"].base
    assert Columns.of_epis(epis)["advs"].base is None  # the input's arrays: concatenated
    # the input is untouched and its other arrays are shared
    assert all(a["obs"] is e["obs"] for a, e in zip(as_list, epis))


@pytest.mark.parametrize("change", ["in_place", "assigned", "shuffled", "dropped"])
def test_changes_to_a_returned_list_are_seen(rng, change):
    epis = make_random_epis(rng, 12, max_len=6)
    for epi in epis:
        epi["advs"] = rng.normal(size=len(epi["rews"])).astype(np.float32)
    out = ef.centerize_advs(epis)
    if change == "in_place":
        out[3]["advs"][:] += 5.0
    elif change == "assigned":
        out[3]["advs"] = out[3]["advs"] + 5.0
    elif change == "shuffled":
        random.Random(0).shuffle(out)
    else:
        out = out[2:]
    again = ef.centerize_advs(out)
    # reference: the same estimator on fresh copies of the arrays
    fresh = [{**e, "advs": np.array(e["advs"])} for e in out]
    expected = ef.centerize_advs(fresh)
    for a, b in zip(again, expected):
        np.testing.assert_allclose(a["advs"], b["advs"], rtol=1e-6, atol=1e-6)
