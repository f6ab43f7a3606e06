"""The information a loop edge carries: the verifying registration's, where it pins the pose.

A loop is verified by registering a scan to a submap (``mapping.loop_closure``); the
registration's Hessian ``H`` (``RegistrationResult.information``: 6x6 over the tangent
``[rho (m), phi (rad)]`` of the right perturbation of ``T_older_newer``, i.e. in the
newer node's body frame) says which directions the match pins down.  Along a
featureless corridor it pins the lateral position and the heading, not the position
along the corridor: a loop edge with the full (isotropic) loop information there would
also impose an along-corridor position the scan does not know.

``loop_sqrt_info`` turns ``H`` into the edge's square-root information ``W`` (6x6,
``W^T W`` is the information; residual ``W log(Z^-1 T_i^-1 T_j)``, whitened):

- ``H`` is whitened by the loop sigmas ``S`` (``LoopConfig.loop_sigmas``): ``S H S``
  over the estimated dofs (planar: x, y, yaw), eigen-decomposed;
- **full** (every eigenvalue at least 1: the scan alone pins every direction to better
  than the loop sigma, and the translation block's smallest / largest eigenvalue at
  least ``MIN_CONDITIONING``): ``W = S^-1``, the isotropic loop edge;
- **partial** (``allow_partial``): the directions whose whitened eigenvalue is at least
  1 and ``MIN_CONDITIONING`` of the largest are kept, each at exactly the loop sigma
  (capped: a loop is never stiffer than the isotropic edge), the others get no
  information at all.  Accepted when at most one direction is left free
  (planar: lateral and yaw pinned) and that direction is (nearly) a translation: at
  most ``MAX_FREE_ROTATION`` of its whitened length is rotation (a corridor leaves its
  axis free, not the heading).  The edge is then free along the *translation part* of
  that direction alone and pins everything orthogonal to it (whitened) at the loop
  sigmas: a corridor's symmetry is a translation, and ``GlobalGraph.add_loop`` puts the
  estimate's slide (metres, for a look-alike place along the corridor) in the free
  direction, where any heading component of it would become a turn of the map;
- otherwise the loop is degenerate (``None``).

In planar mode z, roll and pitch are fixed in the solver; their rows stay the
isotropic ones (the residual there is zero).

``free_directions`` recovers the directions an edge leaves free (tangent vectors in
the newer node's frame) and ``corrections_agree`` compares two loops' map corrections
in the directions both pin down (the confirmation of ``LoopCloser``).
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.geometry.poses import adjoint_matrix, pose_matrices, pose_values
from dsg_jit_ros.mapping.planar import PLANAR_FIXED

PLANAR_DOFS = np.array([0, 1, 5])  # [rho_x, rho_y, phi_z] of the tangent [rho, phi]
MIN_CONDITIONING = 0.05  # smallest / largest eigenvalue of the scan's translation information (full loops)
MAX_FREE_ROTATION = 0.3  # whitened rotation share of a direction a partial loop may leave free
SAME_AXIS = 0.3  # free directions of two loops within ~33 degrees (whitened) count as one axis


def estimated_dofs(planar: bool) -> np.ndarray:
    """Indices of the tangent ``[rho, phi]`` a loop estimates."""
    return PLANAR_DOFS if planar else np.arange(6)


def isotropic_sqrt_info(sigmas: np.ndarray) -> np.ndarray:
    """(6, 6) ``diag(1 / sigmas)``: the square-root information of a full loop edge."""
    return (1.0 / np.asarray(sigmas, dtype=np.float64))[:, None] * np.eye(6)


def translation_conditioning(information: np.ndarray, planar: bool) -> float:
    """Smallest / largest eigenvalue of the translation block of ``information`` (6x6)."""
    t = [0, 1] if planar else [0, 1, 2]
    eig = np.linalg.eigvalsh(information[np.ix_(t, t)])
    return float(eig[0] / eig[-1]) if eig[-1] > 0 else 0.0


def loop_sqrt_info(information: np.ndarray, sigmas: np.ndarray, planar: bool,
                   allow_partial: bool) -> np.ndarray | None:
    """The loop edge's (6, 6) square-root information from the registration's Hessian
    ``information`` (6x6, tangent [rho, phi] of the newer node), loop sigmas ``sigmas``
    (6,) in m and rad; ``None``: degenerate (see the module doc)."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    dofs = estimated_dofs(planar)
    w = sigmas[dofs]
    white = information[np.ix_(dofs, dofs)] * np.outer(w, w)
    if np.linalg.eigvalsh(white).min() >= 1.0 and translation_conditioning(information, planar) >= MIN_CONDITIONING:
        return isotropic_sqrt_info(sigmas)
    if not allow_partial:
        return None
    lam, vec = np.linalg.eigh(white)
    keep = (lam >= 1.0) & (lam >= MIN_CONDITIONING * lam.max())
    if keep.all():  # every eigenvalue clears the bar but the translations are badly conditioned
        keep[0] = False  # (eigh sorts ascending: leave the weakest direction free)
    n_rot = int(np.sum(dofs >= 3))
    free = vec[:, ~keep]
    if keep.sum() < len(dofs) - 1 or np.linalg.norm(free[len(dofs) - n_rot:]) > MAX_FREE_ROTATION:
        return None
    # the free direction is the translation part of the weakest one, and the edge pins the
    # rest: a slide of metres along it (add_loop puts the estimate's there) must not turn
    # into heading (10 % heading, whitened, made a 9 m look-alike 0.18 rad of turn)
    n_trans = len(dofs) - n_rot
    axis = np.zeros(len(dofs))
    axis[:n_trans] = free[:n_trans, 0]
    axis /= np.linalg.norm(axis)
    pinned, _ = np.linalg.qr(vec[:, keep] - np.outer(axis, axis @ vec[:, keep]))
    out = np.zeros((6, 6))
    rows = pinned.T / w  # each pinned whitened direction at unit information
    out[:len(rows), dofs] = rows
    if planar:
        out[np.arange(3, 6), PLANAR_FIXED] = 1.0 / sigmas[PLANAR_FIXED]
    return out


def free_directions(sqrt_info: np.ndarray, planar: bool) -> np.ndarray:
    """(k, 6) unit tangent vectors (newer node's frame) a loop edge leaves free: the null
    space of ``sqrt_info`` over the estimated dofs (empty for a full edge)."""
    dofs = estimated_dofs(planar)
    _, s, vt = np.linalg.svd(sqrt_info[:, dofs])
    tol = 1e-9 * max(float(s.max()), 1e-300)
    null = vt[int(np.sum(s > tol)):]
    out = np.zeros((len(null), 6))
    out[:, dofs] = null
    return out


def slide_along_free(t_measured: np.ndarray, rel_estimate: np.ndarray,
                     free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A loop measurement ``t_measured`` (4x4 T_older_newer) moved along its free
    directions ``free`` ((k, 6), newer node's frame) to where the estimate is along them;
    ``rel_estimate`` = T_measured^-1 T_estimate.  Returns (the estimate's offset along
    each free direction (k,), the moved measurement (4x4))."""
    along = free @ pose_values(rel_estimate[None])[0]
    return along, t_measured @ pose_matrices((free.T @ along)[None])[0]


def is_partial(sqrt_info: np.ndarray, planar: bool) -> bool:
    """Whether an edge leaves a direction free."""
    return len(free_directions(sqrt_info, planar)) > 0


def corrections_agree(a: np.ndarray, b: np.ndarray, at: np.ndarray, free: list[tuple[np.ndarray, np.ndarray]],
                      sigmas: np.ndarray, planar: bool) -> bool:
    """Two map corrections (4x4, map frame) equal within the loop sigmas where they act,
    on the pose ``at`` (T_map_body), in the directions both loops pin down.  ``free``:
    each loop's (free directions (k, 6) in its newer node's frame, that node's pose):
    a correction is unknown along them, so the difference is compared after removing
    them (whitened by ``sigmas``; the free directions of two loops along one corridor
    differ by the loops' small heading differences and count as one axis: the principal
    axis of the set when the next one is below ``SAME_AXIS`` of it); at least
    ``dofs - 1`` directions must remain."""

    dofs = estimated_dofs(planar)
    w = np.asarray(sigmas, dtype=np.float64)[dofs]
    d = pose_values((np.linalg.inv(a @ at) @ (b @ at))[None])[0][dofs] / w
    basis = [adjoint_matrix(np.linalg.inv(at) @ pose) @ f for dirs, pose in free for f in dirs]
    if basis:
        white = np.array(basis)[:, dofs] / w
        white /= np.linalg.norm(white, axis=1, keepdims=True)
        u, s, _ = np.linalg.svd(white.T, full_matrices=False)
        u = u[:, s > SAME_AXIS * s[0]]  # two corridor loops: (nearly) the same free axis, once
        if u.shape[1] > 1:
            return False  # less than dofs - 1 directions compared: no confirmation
        d = d - u @ (u.T @ d)
    rot = dofs >= 3
    return bool(np.linalg.norm(d[~rot]) <= 1.0 and np.linalg.norm(d[rot]) <= 1.0)
