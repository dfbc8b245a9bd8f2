"""A faster step for ``pybullet_envs``' walkers (Hopper, Walker2D, HalfCheetah, Ant, the
Humanoids): the same observations, rewards and physics, bit for bit, with the simulator asked
in batches.

``WalkerBaseBulletEnv.step`` asks pybullet one joint, one body part and one foot at a time:
about 40 calls per HalfCheetah step, each wrapped in a small numpy array, which cost more than
the physics itself (~190 of ~310 us). :class:`WalkerStep` asks once per body for all joint
states (``getJointStates``), all link poses (``getLinkStates``) and all contacts
(``getContactPoints``), sets all torques in one call (``setJointMotorControlArray``), and
otherwise runs ``pybullet_envs``' own arithmetic in its order, so every float comes out the
same (``tests/test_envs_bullet.py`` compares whole episodes with pybullet_envs' step).

It serves an environment only when its step is ``WalkerBaseBulletEnv``'s, its robot's
``apply_action`` is ``WalkerBase``'s or ``Humanoid``'s and its ``calc_state`` is
``WalkerBase``'s or ``HumanoidFlagrun``'s (:func:`walker_step_for`): the walkers, the
humanoid and its flag-run tasks. Any other override keeps ``pybullet_envs``' own step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pybullet

_NONE: frozenset = frozenset()  # a foot touching nothing


def _base(obj: Any, name: str) -> Any:
    """The class called ``name`` among ``obj``'s classes (pybullet_envs' modules are loaded
    under top-level names, so they are found by name), or None."""
    return next((c for c in type(obj).__mro__ if c.__name__ == name), None)


def _own(obj: Any, method: str, *owners: Any) -> Any:
    """Which of ``owners`` defines ``obj``'s ``method`` as ``obj`` calls it, or None."""
    if method in vars(obj):
        return None
    found = getattr(type(obj), method, None)
    return next((o for o in owners if o is not None and found is vars(o).get(method)), None)


def walker_step_for(env: Any) -> WalkerStep | None:
    """A :class:`WalkerStep` for ``env`` (a ``pybullet_envs`` env after its ``reset``), or
    None when ``env`` is not one of the walker tasks it replicates (see the module's
    docstring)."""
    env_base, robot = _base(env, "WalkerBaseBulletEnv"), getattr(env, "robot", None)
    walker = _base(robot, "WalkerBase")
    if env_base is None or walker is None or env.scene.multiplayer:
        return None
    humanoid, flagrun = _base(robot, "Humanoid"), _base(robot, "HumanoidFlagrun")
    apply_action = _own(robot, "apply_action", walker, humanoid)
    calc_state = _own(robot, "calc_state", walker, flagrun)
    if _own(env, "step", env_base) is None or apply_action is None or calc_state is None:
        return None
    return WalkerStep(env, humanoid=apply_action is humanoid, flagrun=calc_state is flagrun)


class WalkerStep:
    """``WalkerBaseBulletEnv.step`` for one episode of ``env`` (made again at every reset:
    ``pybullet_envs`` makes new part and joint objects then).

    Parameters
    ----------
    env : pybullet_envs.gym_locomotion_envs.WalkerBaseBulletEnv
        Reset, not multiplayer, with ``WalkerBaseBulletEnv``'s step.
    humanoid : bool
        The robot's ``apply_action`` is ``Humanoid``'s (else ``WalkerBase``'s).
    flagrun : bool
        The robot's ``calc_state`` is ``HumanoidFlagrun``'s (else ``WalkerBase``'s).
    """

    def __init__(self, env: Any, humanoid: bool = False, flagrun: bool = False) -> None:
        self.env = env
        robot = env.robot
        self.robot = robot
        self.p = env._p
        self.flagrun = flagrun
        joints = robot.ordered_joints
        # Joint.current_relative_position's terms, computed as it computes them
        self.joint_mid = [0.5 * (j.lowerLimit + j.upperLimit) for j in joints]
        self.joint_span = [j.upperLimit - j.lowerLimit for j in joints]
        self.joint_groups = _by_body((j.bodies[j.bodyIndex], j.jointIndex) for j in joints)
        # The torque of action i: WalkerBase.apply_action's (power * power_coef) * float(a_i);
        # Humanoid's float(gain * motor_power * power * a_i), whose last product is numpy's
        # (a Python float times a float32 scalar: float32 arithmetic under numpy 2's rules)
        self.humanoid = humanoid
        motors = robot.motors if humanoid else joints
        self.motor_groups = (
            _by_body((m.bodies[m.bodyIndex], m.jointIndex) for m in motors)
            if humanoid
            else self.joint_groups
        )
        gain = 1  # Humanoid.apply_action's force_gain
        self.torque_coef = (
            [gain * power * robot.power for power in robot.motor_power[: len(motors)]]
            if humanoid
            else [robot.power * j.power_coef for j in joints]
        )
        parts = list(robot.parts.values())
        self.part_keys = [(p.bodies[p.bodyIndex], p.bodyPartIndex) for p in parts]
        self.link_groups = _by_body(k for k in self.part_keys if k[1] != -1)
        self.bases = sorted({k[0] for k in self.part_keys if k[1] == -1})
        body = robot.robot_body
        self.body_key = (body.bodies[body.bodyIndex], body.bodyPartIndex)
        self.feet_keys = [(f.bodies[f.bodyIndex], f.bodyPartIndex) for f in robot.feet]
        self.feet_bodies = sorted({k[0] for k in self.feet_keys})

    def step(self, a: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        """``WalkerBaseBulletEnv.step(a)``: ``(state, reward, done, {})``."""
        env, robot = self.env, self.robot
        self._apply_action(a)
        env.scene.global_step()

        state = self._flagrun_state() if self.flagrun else self._calc_state()
        env._alive = float(robot.alive_bonus(state[0] + robot.initial_z, robot.body_rpy[1]))
        done = env._isDone()
        if not np.isfinite(state).all():
            print("~INF~", state)  # pybullet_envs' own report
            done = True

        potential_old = env.potential
        env.potential = robot.calc_potential()
        progress = float(env.potential - potential_old)

        feet_collision_cost = 0.0
        contacts = self._contacts()
        for i, key in enumerate(self.feet_keys):
            robot.feet_contact[i] = 1.0 if env.ground_ids & contacts.get(key, _NONE) else 0.0

        electricity_cost = env.electricity_cost * float(np.abs(a * robot.joint_speeds).mean())
        electricity_cost += env.stall_torque_cost * float(np.square(a).mean())
        joints_at_limit_cost = float(env.joints_at_limit_cost * robot.joints_at_limit)
        env.rewards = [
            env._alive,
            progress,
            electricity_cost,
            joints_at_limit_cost,
            feet_collision_cost,
        ]
        env.HUD(state, a, done)
        env.reward += sum(env.rewards)
        return state, sum(env.rewards), bool(done), {}

    def _apply_action(self, a: np.ndarray) -> None:
        assert np.isfinite(a).all()  # noqa: S101 - pybullet_envs' own check, kept as it is
        clipped = np.clip(a, -1, +1)
        if self.humanoid:  # the product as pybullet_envs makes it, with numpy's promotion
            forces = [float(c * x) for c, x in zip(self.torque_coef, clipped, strict=False)]
        else:
            forces = [c * float(x) for c, x in zip(self.torque_coef, clipped, strict=False)]
        for body, (indices, positions) in self.motor_groups.items():
            self.p.setJointMotorControlArray(
                body, indices, pybullet.TORQUE_CONTROL, forces=[forces[i] for i in positions]
            )

    def _joint_states(self) -> list[tuple]:
        states: list[Any] = [None] * len(self.joint_mid)
        for body, (indices, positions) in self.joint_groups.items():
            for i, s in zip(positions, self.p.getJointStates(body, indices), strict=True):
                states[i] = s
        return states

    def _poses(self) -> dict[tuple[int, int], tuple]:
        """(body, link) -> (position, orientation) of every part."""
        poses = {}
        for body in self.bases:
            poses[(body, -1)] = self.p.getBasePositionAndOrientation(body)
        for body, (indices, _) in self.link_groups.items():
            for link, s in zip(indices, self.p.getLinkStates(body, indices), strict=True):
                poses[(body, link)] = (s[0], s[1])
        return poses

    def _contacts(self) -> dict[tuple[int, int], set]:
        """(body, link) of each foot's body -> the (body, link) pairs it touches."""
        touching: dict[tuple[int, int], set] = {}
        for body in self.feet_bodies:
            for c in self.p.getContactPoints(body):
                touching.setdefault((body, c[3]), set()).add((c[2], c[4]))
        return touching

    def _flagrun_state(self) -> np.ndarray:
        """``HumanoidFlagrun.calc_state``: the flag moves when reached or after its timeout."""
        robot = self.robot
        robot.flag_timeout -= 1
        state = self._calc_state()
        if robot.walk_target_dist < 1 or robot.flag_timeout <= 0:
            robot.flag_reposition()
            state = self._calc_state()  # against the new flag position
            robot.potential = robot.calc_potential()  # pybullet_envs sets the robot's
        return state

    def _calc_state(self) -> np.ndarray:
        """``WalkerBase.calc_state``, its arithmetic in its order."""
        robot = self.robot
        flat: list[float] = []
        for (pos, vel, _, _), mid, span in zip(
            self._joint_states(), self.joint_mid, self.joint_span, strict=True
        ):
            flat += (2 * (pos - mid) / span, 0.1 * vel)
        j = np.array(flat, dtype=np.float32)
        robot.joint_speeds = j[1::2]
        robot.joints_at_limit = np.count_nonzero(np.abs(j[0::2]) > 0.99)

        poses = self._poses()
        parts_xyz = np.array([poses[k][0] for k in self.part_keys]).flatten()
        body_xyz, body_quat = poses[self.body_key]
        body_real_xyz = np.array(body_xyz)
        robot.body_xyz = (parts_xyz[0::3].mean(), parts_xyz[1::3].mean(), body_real_xyz[2])
        robot.body_real_xyz = body_real_xyz
        robot.body_rpy = pybullet.getEulerFromQuaternion(np.array(body_quat))
        z = robot.body_xyz[2]
        if robot.initial_z is None:
            robot.initial_z = z
        r, p, yaw = robot.body_rpy
        robot.walk_target_theta = np.arctan2(
            robot.walk_target_y - robot.body_xyz[1], robot.walk_target_x - robot.body_xyz[0]
        )
        robot.walk_target_dist = np.linalg.norm(
            [robot.walk_target_y - robot.body_xyz[1], robot.walk_target_x - robot.body_xyz[0]]
        )
        angle_to_target = robot.walk_target_theta - yaw
        rot_speed = np.array(
            [[np.cos(-yaw), -np.sin(-yaw), 0], [np.sin(-yaw), np.cos(-yaw), 0], [0, 0, 1]]
        )
        vx, vy, vz = np.dot(rot_speed, robot.robot_body.speed())
        more = np.array(
            [
                z - robot.initial_z,
                np.sin(angle_to_target),
                np.cos(angle_to_target),
                0.3 * vx,
                0.3 * vy,
                0.3 * vz,
                r,
                p,
            ],
            dtype=np.float32,
        )
        return np.clip(np.concatenate([more] + [j] + [robot.feet_contact]), -5, +5)


def _by_body(keys: Any) -> dict[int, tuple[list[int], list[int]]]:
    """(body, index) pairs -> body -> (indices, positions of those pairs in ``keys``)."""
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for position, (body, index) in enumerate(keys):
        indices, positions = groups.setdefault(body, ([], []))
        indices.append(index)
        positions.append(position)
    return groups
