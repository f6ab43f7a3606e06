"""The window's voxel variables: which voxels are active, who observes them, their shapes
and their priors toward the frozen map.

A voxel is *active* (a ``voxel_cell3d`` variable in the window's WorldModel) while at
least one window keyframe observes it.  Each keyframe's observations are
``pose_voxel_surface`` factors whitened by the voxel's surface shape ``W`` (3x3, map
frame, from the local map's statistics: stiff across the surface, soft along it),
scaled by the observation's point count; an active voxel with frozen points also has
a ``prior`` toward its frozen mean, shaped alike and weighted as ``frozen_weight``
observations.  Capacities (``max_voxels``, ``max_observations``) are applied on
insertion, most-supported voxels first, and what does not fit is counted.
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.mapping.association import CellObservations
from dsg_jit_ros.mapping.voxel_map import observation_weights, surface_sqrt_information
from dsg_jit_ros.world.sorted_lookup import sorted_positions


class ActiveVoxels:
    """Active voxels of one window (``wm``: its WorldModel, ``local``: its LocalMap,
    ``cfg``: its WindowConfig)."""

    def __init__(self, wm, local, cfg):
        self.wm, self.local, self.cfg = wm, local, cfg
        self.ids: dict[int, int] = {}  # packed key -> voxel variable
        self.priors: dict[int, int] = {}  # packed key -> prior factor toward its frozen statistics
        self.users: dict[int, int] = {}  # packed key -> window keyframes seeing it
        self.shapes: dict[int, np.ndarray] = {}  # packed key -> W (3x3, map frame)
        self.n_obs = 0  # pose_voxel_surface factors in the window
        self.dropped_capacity = 0  # observations beyond the capacities

    def __len__(self) -> int:
        return len(self.ids)

    def keys(self) -> np.ndarray:
        """Sorted packed keys of the active voxels."""
        return np.array(sorted(self.ids), dtype=np.int64)

    def insert(self, var: int, cells: CellObservations, t_map_body: np.ndarray) -> tuple[CellObservations, np.ndarray]:
        """Observations of ``cells`` (keyed under ``t_map_body``) by keyframe variable ``var``:
        capacities applied, voxels activated (at their frozen mean, else where the
        observation puts them), factors added.  Returns (the cells kept, their factor ids)."""
        empty = np.zeros(0, dtype=np.int64)
        if len(cells) == 0:
            return cells, empty
        order = np.argsort(-cells.count, kind="stable")  # most-supported voxels first
        found = np.array([self.ids.get(k, -1) for k in cells.keys[order].tolist()], dtype=np.int64)
        is_new = found < 0
        keep = ~is_new | (np.cumsum(is_new) <= self.cfg.max_voxels - len(self.ids))
        keep &= np.cumsum(keep) <= self.cfg.max_observations - self.n_obs
        self.dropped_capacity += int((~keep).sum())
        cells = cells.select(order[keep])
        found, is_new = found[keep], is_new[keep]
        if not len(cells):
            return cells, empty
        if is_new.any():
            world = cells.mean_body[is_new] @ t_map_body[:3, :3].T + t_map_body[:3, 3]
            frozen = self.local.frozen.means(cells.keys[is_new])
            vids = self.wm.add_variables("voxel_cell3d", np.where(np.isnan(frozen), world, frozen))
            self.ids.update(zip(cells.keys[is_new].tolist(), vids.tolist()))
            found[is_new] = vids
        pairs = np.stack([np.full(len(found), var), found], axis=1)
        obs = np.asarray(self.wm.add_factors("pose_voxel_surface", pairs, {
            "point_body": cells.mean_body, "robust": ("cauchy", self.cfg.kernel_scale)}))
        self.n_obs += len(cells)
        for k in cells.keys.tolist():
            self.users[k] = self.users.get(k, 0) + 1
        return cells, obs

    def release(self, keys: np.ndarray) -> None:
        """One observation fewer of each key (its factors already removed); the voxels
        nobody sees any more leave the window with their priors."""
        gone = []
        for k in keys.tolist():
            n = self.users[k] - 1
            if n:
                self.users[k] = n
            else:
                del self.users[k]
                gone.append(k)
        self.n_obs -= len(keys)
        if gone:
            vids = np.array([self.ids.pop(k) for k in gone], dtype=np.int64)
            for k in gone:
                self.shapes.pop(k, None)
            self.wm.remove_factors([p for p in (self.priors.pop(k, None) for k in gone) if p is not None])
            self.wm.remove_variables(vids)

    def reshape(self, observed: np.ndarray, observations) -> None:
        """New surface shapes for ``observed`` (sorted, unique active keys) from the local
        map's statistics, given to all their observations: ``observations`` is the
        window's [(factor ids, cells)] per keyframe."""
        if not len(observed):
            return
        stats = self.local.stats(observed)
        sqrt = surface_sqrt_information(stats, self.local.voxel_size, self.cfg.surface)  # W, map frame
        live = [(obs, cells) for obs, cells in observations if cells is not None and len(cells)]
        okeys = np.concatenate([c.keys for _, c in live])
        pos, hit = sorted_positions(observed, okeys)
        fids = np.concatenate([o for o, _ in live])[hit]
        count = np.concatenate([c.count for _, c in live])[hit]
        weight = np.sqrt(observation_weights(count, self.cfg.surface))
        self.wm.set_factors(fids, {"sqrt_info": weight[:, None, None] * sqrt[pos[hit]]})
        self.shapes.update(zip(observed.tolist(), sqrt))

    def refresh_priors(self, keys: np.ndarray) -> None:
        """Priors toward the frozen means of active ``keys`` that have frozen points, shaped
        like their voxel's observations."""
        if self.cfg.frozen_weight <= 0 or not len(keys):
            return
        frozen = self.local.frozen.stats(keys)
        has = frozen.count > 0
        if not has.any():
            return
        keys = keys[has]
        sqrt = np.stack([self.shapes[k] for k in keys.tolist()])
        w = np.sqrt(self.cfg.frozen_weight * observation_weights(frozen.count[has], self.cfg.surface))
        params = {"target": self.local.frozen.means(keys), "sqrt_info": w[:, None, None] * sqrt}
        fids = np.array([self.priors.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        old = fids >= 0
        if old.any():
            self.wm.set_factors(fids[old], {k: v[old] for k, v in params.items()})
        if (~old).any():
            vids = np.array([self.ids[k] for k in keys[~old].tolist()], dtype=np.int64)
            new = self.wm.add_factors("prior", vids[:, None], {k: v[~old] for k, v in params.items()})
            self.priors.update(zip(keys[~old].tolist(), new.tolist()))

    def drop_orphan_priors(self, keys: np.ndarray | None = None) -> None:
        """Remove the priors of active voxels (``keys``, default all) the frozen map no longer
        has points for."""
        keys = self.keys() if keys is None else keys
        gone = keys[(self.local.frozen.stats(keys).count <= 0) & np.isin(keys, list(self.priors))]
        if len(gone):
            self.wm.remove_factors(np.array([self.priors.pop(k) for k in gone.tolist()], dtype=np.int64))

    def centres(self, frozen_map) -> np.ndarray:
        """(M, 3) active voxels' estimates, then ``frozen_map``'s other means (m)."""
        keys = np.fromiter(self.ids.keys(), dtype=np.int64, count=len(self.ids))
        active = self.wm.get_variable_values(list(self.ids.values())).reshape(-1, 3)
        frozen = frozen_map.keys[~np.isin(frozen_map.keys, keys)]
        return np.concatenate([active, frozen_map.means(frozen).reshape(-1, 3)])
