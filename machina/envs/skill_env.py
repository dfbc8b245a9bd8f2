"""SkillEnv: an environment whose observations carry a skill drawn at every reset (DIAYN)."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium
import numpy as np

from machina.envs._wrapper_api import WrapperAPI
from machina.utils.aliases import keyword_aliases


class SkillEnv(WrapperAPI, gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Draw a skill ``z`` at every reset and append its one-hot to each observation.

    The skill is drawn uniformly from ``num_skill`` skills with the environment's own
    ``np_random`` after the inner reset, so ``reset(seed=s)`` reproduces the skills too.
    Observations are ``concat(obs, one_hot(z))`` of shape ``(ob_dim + num_skill,)``; the
    skill index is also in ``info["skill"]`` at reset and every step (samplers record numeric
    infos, so episodes carry it as ``e_is["skill"]``).

    Composes with the other wrappers, e.g. ``SkillEnv(C2DEnv(GymEnv("Pendulum-v1")), 4)``
    (discrete actions) or ``C2DEnv(SkillEnv(GymEnv("Pendulum-v1"), 4))``.

    Parameters
    ----------
    env : gymnasium.Env
        An environment (a ``GymEnv`` too) whose observation space is a ``Box`` of shape (d,).
    num_skill : int
        Number of skills, at least 2.
    fixed_skill : int, optional
        Use this skill at every reset instead of drawing one (for evaluating a skill); also
        settable later as the attribute. ``reset(options={"skill": k})`` fixes the skill of
        one episode and wins over ``fixed_skill``.

    Attributes
    ----------
    skill : int
        Skill of the current episode.
    real_observation_space : gymnasium.spaces.Box
        The inner environment's observation space (what a DIAYN discriminator sees).
    skill_space : gymnasium.spaces.Box
        Space of the one-hot, ``[0, 1]^num_skill``.
    """

    def __init__(
        self, env: gymnasium.Env, num_skill: int = 4, fixed_skill: int | None = None
    ) -> None:
        space = env.observation_space
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"env: expected an observation space Box of shape (d,), given {space}")
        if isinstance(num_skill, bool) or int(num_skill) != num_skill or num_skill < 2:
            raise ValueError(f"num_skill: expected an integer >= 2, given {num_skill!r}")
        gymnasium.utils.RecordConstructorArgs.__init__(
            self, num_skill=num_skill, fixed_skill=fixed_skill
        )
        gymnasium.Wrapper.__init__(self, env)
        self.num_skill = int(num_skill)
        self.fixed_skill = None if fixed_skill is None else self._check_skill(fixed_skill)
        self.skill = 0
        self.real_observation_space = space
        dtype = np.promote_types(space.dtype, np.float32)
        self.skill_space = gymnasium.spaces.Box(0.0, 1.0, (self.num_skill,), dtype)
        self.observation_space = gymnasium.spaces.Box(
            np.concatenate([space.low, np.zeros(self.num_skill)]).astype(dtype),
            np.concatenate([space.high, np.ones(self.num_skill)]).astype(dtype),
            dtype=dtype,
        )
        self._one_hots = np.eye(self.num_skill, dtype=dtype)

    def _check_skill(self, skill: Any, name: str = "fixed_skill") -> int:
        if isinstance(skill, bool) or int(skill) != skill or not 0 <= skill < self.num_skill:
            raise ValueError(
                f"{name}: expected an integer in [0, {self.num_skill}), given {skill!r}"
            )
        return int(skill)

    def _with_skill(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.asarray(obs, dtype=self._one_hots.dtype), self._one_hots[self.skill]]
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the inner environment and choose the episode's skill.

        Parameters
        ----------
        seed : int, optional
            Seeds the inner environment, and so the skills drawn from now on.
        options : dict, optional
            ``"skill"``: the skill of this episode; the other entries go to the inner reset.

        Returns
        -------
        obs : np.ndarray
            ``(ob_dim + num_skill,)``.
        info : dict
            The inner info plus ``"skill"``.
        """
        options = dict(options or {})
        skill = options.pop("skill", None)
        obs, info = self.env.reset(seed=seed, options=options or None)
        if skill is not None:
            self.skill = self._check_skill(skill, 'options["skill"]')
        elif self.fixed_skill is not None:
            self.skill = self._check_skill(self.fixed_skill)
        else:
            # Drawn after the inner reset so that a seed fixes the skill sequence too.
            self.skill = int(self.np_random.integers(self.num_skill))
        return self._with_skill(obs), {**info, "skill": self.skill}

    @keyword_aliases(ac="action")
    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner environment; the observation keeps the episode's skill."""
        obs, rew, term, trunc, info = self.env.step(action)
        return self._with_skill(obs), rew, term, trunc, {**info, "skill": self.skill}
