"""What both step loops (per-env ``_step_loop.StepLoop``, vector ``_vector_loop.VectorStepLoop``)
check of a run: the policy's actions and probabilities, and whom an error blames (the policy
when its outputs were already invalid, else the environment)."""

from __future__ import annotations

from typing import Any

import numpy as np

from machina.samplers._buffers import StepOutputs
from machina.utils.checks import all_finite_array as all_finite


class LoopChecks:
    """Checks shared by the step loops; they need ``slots`` (with ``slot_ids``, ``seeds``,
    ``action_shape``, ``action_space``, ``env_error``), ``outputs`` and ``first_row``."""

    slots: Any
    outputs: StepOutputs | None
    first_row: Any

    def _policy_error(self, k: int, detail: str) -> RuntimeError:
        slots = self.slots
        return RuntimeError(
            f"the policy {detail} for environment {slots.slot_ids[k]} (seed {slots.seeds[k]}); "
            "the policy is at fault, not the environment: check its weights and inputs for "
            "NaN/inf (e.g. a training step that diverged)"
        )

    def _bad_outputs(self, k: int, first: int, t: int) -> str | None:
        """What is wrong with slot ``k``'s policy outputs at rows ``first..t`` (its episode so
        far), or None: non-finite float actions, non-finite or negative probabilities ``pi``."""
        outputs = self.outputs
        if outputs is None or outputs.acs is None:
            return None
        columns = [("action", outputs.acs)]
        if "pi" in outputs.a_is:
            columns.append(("pi", outputs.a_is["pi"]))
        for name, column in columns:
            values = column[first : t + 1, k]
            if values.dtype.kind != "f":
                continue
            bad = ~np.isfinite(values)
            if name == "pi":
                bad |= values < 0
            if bad.any():
                where = np.argwhere(bad)[0]
                what = "an invalid probability pi" if name == "pi" else "a non-finite action"
                return f"returned {what} ({values[tuple(where)]}) at step {int(where[0]) + 1}"
        return None

    def _blame(self, k: int, t: int, error: RuntimeError, first: int | None = None) -> RuntimeError:
        """The error to raise when slot ``k``'s environment failed at row ``t``: the policy's
        when its outputs of this episode were already non-finite (NaN actions make
        environments fail or return NaN), else ``error``."""
        first = int(self.first_row[k]) if first is None else first
        detail = self._bad_outputs(k, first, t)
        if detail is None:
            return error
        policy_error = self._policy_error(k, detail)
        policy_error.__context__ = error
        return policy_error

    def _check_action_shape(self, ac_real: np.ndarray, step_rows: Any) -> None:
        """At a run's first step: the policy's actions must have the action space's shape (a
        policy without spaces is not checked against the environment otherwise)."""
        expected = self.slots.action_shape
        given = tuple(np.shape(ac_real))
        rows = len(self.slots) if step_rows is Ellipsis else len(step_rows)
        if expected is not None and given != (rows, *expected):
            space = self.slots.action_space
            raise ValueError(
                f"pol: returned actions of shape {given[1:]} per environment (batch "
                f"{given}), the environment's action_space {space} expects {expected}"
            )

    def _check_packed(self, packed: dict[str, Any]) -> None:
        """The columns about to be returned: finite rewards, finite float actions, valid pi."""
        cols = packed["cols"]
        if "rews" not in cols:
            return
        # Other a_i entries may hold -inf on purpose (e.g. masked logits): not checked.
        checks = [("rews", cols["rews"]), ("acs", cols["acs"])]
        if "pi" in cols["a_is"]:
            checks.append(("pi", cols["a_is"]["pi"]))
        for key, column in checks:
            if column.dtype.kind != "f":
                continue
            if all_finite(column) and not (key == "pi" and column.min() < 0):
                continue
            bad = ~np.isfinite(column)
            if key == "pi":
                bad |= column < 0
            index = int(np.argwhere(bad.reshape(len(column), -1).any(axis=1))[0, 0])
            # The episode holding that row, in pack_episodes' order (by slot, then start).
            e = int(np.searchsorted(packed["bounds"], index, side="right")) - 1
            k, step = int(packed["slots"][e]), index - int(packed["bounds"][e]) + 1
            value = column[index]
            if key == "rews":
                raise self.slots.env_error(
                    k, f"step {step}", None, f"returned a non-finite reward ({value})"
                )
            name = "an invalid probability pi" if key == "pi" else "a non-finite action"
            raise self._policy_error(k, f"returned {name} ({value}) at step {step}")
