"""SlotTable (world.slot_table): random edits checked against plain Python dicts.

The oracle keeps var id -> type and factor id -> (batch, variable ids); after every
edit the table must give the same answers (ids, each direction of the variable <->
factor relation), never share a row between two live entries, and report a change
exactly when something the graph or the state index is built from changed."""

import numpy as np
import pytest

from dsg_jit_ros.world.graph import ResidualSpec
from dsg_jit_ros.world.schema import Schema
from dsg_jit_ros.world.slot_table import SlotTable


def _unary(x, p):
    return x - p["target"]


def _binary(x, p):
    return x[:3] - x[3:6]


def _check(table: SlotTable, var_type: dict, factors: dict) -> None:
    assert sorted(table.variable_ids) == sorted(var_type)
    for name, pool in table.variables.items():
        mine = [v for v, t in var_type.items() if t == name]
        rows = [table.variable(v).slot for v in mine]
        assert len(set(rows)) == len(rows) and pool.used[rows].all() and pool.used.sum() == len(mine)
    assert table.factor_ids() == sorted(factors)
    assert table.num_factors == len(factors)
    for fid, (batch, vids) in factors.items():
        assert table.factor_var_ids(fid) == vids
        b, rows = table.factor_rows([fid])
        assert b.number == batch and b.used[rows[0]] and b.fids[rows[0]] == fid
    for b in table.batches:
        assert b.used.sum() == sum(1 for n, _ in factors.values() if n == b.number)
    for vid in var_type:
        assert table.factors_on(vid) == sorted(f for f, (_, vids) in factors.items() if vid in vids)
    layout = table.layout()
    offsets = {t.name: (o, t.dim) for t, o in zip(layout.types, layout.offsets)}
    for vid, (a, b) in table.state_index().items():
        o, d = offsets[var_type[vid]]
        assert (a, b) == (o + table.variable(vid).slot * d, o + (table.variable(vid).slot + 1) * d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_edits_match_a_dict_oracle(seed):
    rng = np.random.default_rng(seed)
    schema = Schema.create()
    table = SlotTable()
    for name, cap in (("point3d", 4), ("voxel_cell3d", 0)):
        table.add_variable_type(schema.variable_type(name), cap)
    unary = table.add_batch(schema.signature(ResidualSpec("unary", _unary), (schema.variable_type("point3d"),),
                                             {"target": (3,)}), 3)
    binary = table.add_batch(schema.signature(ResidualSpec("binary", _binary), (schema.variable_type("point3d"),
                                              schema.variable_type("voxel_cell3d")), {}), 0)
    var_type: dict[int, str] = {}
    factors: dict[int, tuple[int, tuple[int, ...]]] = {}
    for _ in range(150):
        table.graph_built()
        op = rng.integers(4)
        points = [v for v, t in var_type.items() if t == "point3d"]
        voxels = [v for v, t in var_type.items() if t == "voxel_cell3d"]
        if op == 0:  # add variables (sometimes none)
            name = ("point3d", "voxel_cell3d")[rng.integers(2)]
            n = int(rng.integers(0, 4))
            ids, rows = table.add_variables(name, n)
            assert len(ids) == len(rows) == n
            var_type.update((int(v), name) for v in ids)
            assert table.graph_changed() == (n > 0)
        elif op == 1 and points:  # add factors
            m = int(rng.integers(1, 4))
            if voxels and rng.random() < 0.5:
                batch = binary
                vids = np.stack([rng.choice(points, m), rng.choice(voxels, m)], axis=1)
                params = {}
            else:
                batch = unary
                vids = rng.choice(points, (m, 1))
                params = {"target": rng.normal(size=(m, 3))}
            slots = np.array([[table.variable(v).slot for v in row] for row in vids.tolist()], dtype=np.int32)
            fids = table.add_factors(batch, vids, slots, params, np.broadcast_to(np.eye(3), (m, 3, 3)), 0, 1.0)
            factors.update((int(f), (batch.number, tuple(int(v) for v in row))) for f, row in zip(fids, vids))
            assert table.graph_changed()
        elif op == 2 and factors:  # remove some factors
            gone = rng.choice(sorted(factors), int(rng.integers(1, min(4, len(factors)) + 1)), replace=False)
            table.remove_factors(gone)
            for f in gone.tolist():
                del factors[f]
            assert table.graph_changed()
        elif op == 3 and var_type:  # remove a variable: refused while it has factors
            vid = int(rng.choice(sorted(var_type)))
            if any(vid in vids for _, vids in factors.values()):
                with pytest.raises(ValueError, match=f"variable {vid} still has factors"):
                    table.remove_variables([vid])
                assert not table.graph_changed()
            else:
                table.remove_variables([vid])
                del var_type[vid]
                assert table.graph_changed()
        _check(table, var_type, factors)
    with pytest.raises(KeyError, match="unknown variable id"):
        table.variable(10**6)
    with pytest.raises(KeyError, match="unknown factor id"):
        table.remove_factors([10**6])


def test_state_index_is_cached_until_rows_change():
    schema = Schema.create()
    table = SlotTable()
    table.add_variable_type(schema.variable_type("point3d"), 2)
    ids, _ = table.add_variables("point3d", 2)
    first = table.state_index()
    assert table.state_index() is first  # nothing changed
    table.variables["point3d"].set_fixed([0], True)  # the graph changes, the index does not
    assert table.graph_changed() and table.state_index() is first
    table.add_variables("point3d", 1)  # grows the capacity: offsets and slots may move
    assert table.state_index() is not first and len(table.state_index()) == 3
