"""Fuzzing hostile inputs: `.pt2` archives, NRRD headers and model cards.

Each input either loads or is refused with one `InputError`; nothing else may
escape (that would be a traceback on the page), and no sentinel may appear (that
would be code from the file running). Runs are derandomised so CI is repeatable;
CAMVIEWER_FUZZ_EXAMPLES raises the count for a long run (docs/security.md).
"""

from __future__ import annotations

import json
import os
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explain.errors import InputError
from explain.io.load import load_volume
from explain.models.load import apply_card, read_model_file
from tests import hostile

EXAMPLES = int(os.environ.get("CAMVIEWER_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROOT_NAME, BASE = hostile.members(hostile.tiny_pt2({"task": "classification", "class_names": ["a", "b"]}))
DANGEROUS_TARGETS = [
    "torch.os.system",
    "torch.load",
    "torch.hub.load",
    "torch.ops.aten.from_file.default",
    "torch.ops.aten._print.default",
    "_operator.getitem",
    "math.sqrt",
    "builtins.eval",
    "torch.ops.higher_order.cond",
    "#custom",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _mutations():
    names = sorted(BASE)
    flip = st.tuples(st.just("flip"), st.sampled_from(names), st.integers(0, 10_000), st.integers(0, 255))
    swap = st.tuples(st.just("pickle"), st.sampled_from(names), st.just(0), st.just(0))
    mark = st.tuples(st.just("use_pickle"), st.sampled_from(["weights", "constants"]), st.integers(0, 5), st.just(0))
    target = st.tuples(st.just("target"), st.sampled_from(DANGEROUS_TARGETS), st.integers(0, 20), st.just(0))
    extra = st.tuples(st.just("member"), st.text(min_size=1, max_size=40), st.just(0), st.just(0))
    value = st.tuples(
        st.just("value"),
        st.sampled_from(["guards_code", "range_constraints", "schema_version"]),
        st.just(0),
        st.just(0),
    )
    return st.lists(st.one_of(flip, swap, mark, target, extra, value), min_size=1, max_size=4)


def _apply(mutations, sentinel) -> bytes:
    files = dict(BASE)
    for kind, what, where, byte in mutations:
        if kind == "flip" and files.get(what):
            data = bytearray(files[what])
            data[where % len(data)] = byte
            files[what] = bytes(data)
        elif kind == "pickle":
            files[what] = hostile.torch_pickle(sentinel)
        elif kind == "use_pickle":
            rel = f"data/{what}/model_{what}_config.json"
            try:
                doc = json.loads(files[rel])
                entries = list(doc["config"].values())
                if entries:
                    entries[where % len(entries)]["use_pickle"] = True
                    files[f"data/{what}/{entries[where % len(entries)]['path_name']}"] = hostile.torch_pickle(sentinel)
                files[rel] = json.dumps(doc).encode()
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        elif kind == "target":
            try:
                doc = json.loads(files["models/model.json"])
                nodes = doc["graph_module"]["graph"]["nodes"]
                nodes[where % len(nodes)]["target"] = what
                files["models/model.json"] = json.dumps(doc).encode()
            except (ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError):
                pass
        elif kind == "member":
            files[what] = b"x"
        elif kind == "value":
            try:
                doc = json.loads(files["models/model.json"])
                doc[what] = ["__import__('os').system('true')"] if what == "guards_code" else {"s0": 1}
                files["models/model.json"] = json.dumps(doc).encode()
            except (ValueError, KeyError, TypeError):
                pass
    return hostile.repack(ROOT_NAME, files)


@FUZZ
@given(_mutations())
def test_mutated_pt2_archives_load_or_are_refused(tmp_path, mutations):
    sentinel = tmp_path / "ran"
    try:
        data = _apply(mutations, sentinel)
    except (ValueError, zipfile.LargeZipFile):
        return
    try:
        read_model_file(data, "fuzz.pt2")
    except InputError as e:
        assert "\n" not in str(e)
    assert not sentinel.exists()


NRRD_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["uint8", "int16", "float", "double", "block", "nonsense", ""]),
        "dimension": st.sampled_from(["1", "3", "4", "-1", "x", "100"]),
        "sizes": st.sampled_from(["4 4 4", "4 4 4 4", "0 4 4", "-4 4 4", "100000 100000 100000", "4 4", "a b c"]),
        "encoding": st.sampled_from(["raw", "gzip", "bzip2", "ascii", "hex", "zip"]),
        "endian": st.sampled_from(["little", "big", "middle"]),
        "space": st.sampled_from(["LPS", "RAS", "left-posterior-superior", "![x](http://127.0.0.1/)", "scanner-xyz"]),
        "space directions": st.sampled_from(["(1,0,0) (0,1,0) (0,0,1)", "none (1,0,0) (0,1,0) (0,0,1)", "(nan)", "x"]),
        "space origin": st.sampled_from(["(0,0,0)", "(1e308,1e308,1e308)", "()"]),
        "byte skip": st.sampled_from(["0", "-1", "-5", "10", "99999999999"]),
        "line skip": st.sampled_from(["0", "1", "-1", "1000000000"]),
        "data file": st.sampled_from(["/etc/passwd", "../secret.raw", "data.raw", "LIST", "/dev/zero", "sub/../../x"]),
        "kinds": st.sampled_from(["domain domain domain", "list domain domain domain", "x"]),
    },
)


@FUZZ
@given(NRRD_FIELDS, st.binary(max_size=512))
def test_random_nrrd_headers_load_or_are_refused(tmp_path, fields, payload):
    (tmp_path / "secret.raw").write_bytes(b"S" * 4096)
    folder = tmp_path / "upload"
    folder.mkdir(exist_ok=True)
    (folder / "data.raw").write_bytes(payload)
    (folder / "scan.nrrd").write_bytes(hostile.nrrd_header(fields) + payload)
    try:
        volume = load_volume(folder / "scan.nrrd", max_voxels=100_000, max_bytes=50_000_000)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert not (volume.data == ord("S")).all(), "data came from a file outside the upload's folder"


CARD_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        key: JSON_VALUES
        for key in (
            "task",
            "class_names",
            "input_shape",
            "intensity",
            "spacing",
            "orientation",
            "default_layer",
            "name",
        )
    },
)
MODEL_FILE = read_model_file(hostile.tiny_pt2(), "tiny.pt2")


@FUZZ
@given(st.one_of(CARD_FIELDS, JSON_VALUES))
def test_random_model_cards_apply_or_are_refused(card):
    try:
        model = apply_card(MODEL_FILE, overrides=card)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert model.card.input_shape == (1, 8, 8, 8)


@pytest.mark.parametrize("field", ["intensity", "input_shape", "class_names", "spacing"])
def test_card_fields_of_the_wrong_type_inside_a_pt2(field):
    wrong = {"intensity": [1, 2], "input_shape": "64", "class_names": 5, "spacing": {"a": 1}}[field]
    data = hostile.tiny_pt2({"task": "classification", field: wrong})
    with pytest.raises(InputError, match=field):
        read_model_file(data, "odd.pt2")
