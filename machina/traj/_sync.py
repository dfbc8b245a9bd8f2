"""Broadcasting a whole Traj from one rank to the others (``tf.sync``)."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.distributed as dist

from machina.traj import _files
from machina.traj.traj import Traj
from machina.utils.distributed import collective_device


def sync(traj: Traj, master_rank: int = 0) -> Traj:
    """Every rank gets ``master_rank``'s stored episodes, over torch.distributed.

    A collective: every rank of the default process group calls it. The columns, episode
    boundaries, groups, bound, ``pri_beta``, the batch generator's state and
    the rank-based replay samplers' orders are broadcast as tensors and JSON (no pickle), so
    every rank then draws the batches ``master_rank`` would (an unseeded Traj's generator is
    seeded on ``master_rank`` first, from its global RNG, as its first draw would seed it);
    pending episodes are not sent.
    Without an initialised group of more than one rank, ``traj`` is returned as it is.

    Parameters
    ----------
    traj : Traj
        This rank's Traj; on ``master_rank``, the one sent.
    master_rank : int
        The rank whose Traj every rank gets.

    Returns
    -------
    Traj
        ``traj`` itself on ``master_rank``; elsewhere a new Traj on ``traj``'s device, with
        its ``ddp`` flag.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return traj
    rank, device = dist.get_rank(), collective_device()
    master = rank == master_rank
    if master:
        # seeded now, as its first draw would: the other ranks' generators would otherwise be
        # seeded from their own global RNGs at their first draw, and draw other batches
        traj._rng.generator()
        rank_states = traj._rank_sampler_states()
        meta = {
            "columns": [
                [k, str(v.dtype).removeprefix("torch."), list(v.shape)]
                for k, v in traj.data_map.items()
            ],
            "epis_index": traj.epis_index.tolist(),
            "groups": traj.groups,
            "max_steps": traj.max_steps,
            "pri_beta": traj.pri_beta,
            "rng_state": traj._rng.seeded,
            # rank-based samplers rebuild their order lazily: not a function of the
            # priorities alone, so sent as Traj.save writes them
            "rank_states": [
                [name, value.dtype.str, list(value.shape)] for name, value in rank_states.items()
            ],
        }
        payload = torch.tensor(list(json.dumps(meta).encode()), dtype=torch.uint8, device=device)
        size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    else:
        size = torch.zeros(1, dtype=torch.int64, device=device)
    dist.broadcast(size, master_rank)
    if not master:
        payload = torch.empty(int(size), dtype=torch.uint8, device=device)
    dist.broadcast(payload, master_rank)
    meta = json.loads(bytes(payload.cpu().numpy().tolist()).decode())
    columns = {}
    for key, dtype_name, shape in meta["columns"]:
        dtype = getattr(torch, dtype_name)
        if master:
            wire = traj.data_map[key].to(device).contiguous()
        else:
            wire = torch.empty(shape, dtype=dtype, device=device)
        # gloo has no bool collectives: bools travel as bytes
        dist.broadcast(wire.view(torch.uint8) if dtype == torch.bool else wire, master_rank)
        columns[key] = wire
    members = {}
    for name, dtype_str, shape in meta["rank_states"]:
        dtype = np.dtype(dtype_str)
        if master:
            value = np.ascontiguousarray(rank_states[name]).reshape(-1).view(np.uint8)
            wire = torch.from_numpy(value.copy()).to(device)
        else:
            wire = torch.empty(
                int(np.prod(shape)) * dtype.itemsize, dtype=torch.uint8, device=device
            )
        dist.broadcast(wire, master_rank)  # as bytes: any numpy dtype, bools included
        members[name] = wire.cpu().numpy().view(dtype).reshape(shape)
    rng_state = None
    if meta.get("rng_state"):
        # the generator's state is a CPU byte tensor of fixed size (torch.Generator)
        rng_state = traj._rng.get_state() if master else torch.Generator().get_state()
        assert rng_state is not None
        wire = rng_state.to(device)
        dist.broadcast(wire, master_rank)
        rng_state = wire.cpu()
    if master:
        return traj
    new = Traj(max_steps=meta["max_steps"], ddp=traj.ddp, device=traj.device)
    new._epis_index = np.asarray(meta["epis_index"], dtype=np.int64)
    new.data_map = {k: v.to(new.device) for k, v in columns.items()}
    new.groups = dict(meta["groups"])
    new.pri_beta = meta["pri_beta"]
    if rng_state is not None:
        new._rng.set_state(rng_state)
    new._restore_rank_samplers(_files.rank_states_of(members, new.data_map, new._epis_index))
    return new
