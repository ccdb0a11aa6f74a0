"""A view in the URL is user input: every value is checked, names are never paths, bad values are dropped."""

from __future__ import annotations

from explain.share import page_choices, upload_hash, upload_name, view_of, with_page


def test_page_choices_keep_known_short_printable_values_only():
    params = {"case": "Sample brain MRI", "method": ["gradcam", "layercam"], "target": "x" * 301, "layer": "a\nb",
              "evil": "../../etc/passwd"}  # fmt: skip
    assert page_choices(params) == {"case": "Sample brain MRI", "method": "layercam"}


def test_upload_names_carry_a_content_hash_and_nothing_else():
    name = upload_name("95464d82e7f012b7a317eef7c2708eec")
    assert name == "upload:95464d82e7f012b7a317eef7c2708eec"
    assert upload_hash(name) == "95464d82e7f012b7a317eef7c2708eec"
    for bad in ("upload:../../x", "upload:ABC", "upload:", "case.nii.gz", None):
        assert upload_hash(bad) is None, bad


def test_view_values_are_checked_and_bad_ones_dropped():
    assert view_of({"cross": "98,116,94", "window": "300,120", "opacity": "0.7"}) == {
        "cross": [98, 116, 94], "window": [300.0, 120.0], "opacity": 0.7}  # fmt: skip
    assert view_of({"cross": "12,7"}) == {"cross": [12, 7, 0]}  # a 2D image
    bad = {"cross": "-1,2,3", "window": "0,40", "opacity": "1.5"}
    assert view_of(bad) == {}
    assert view_of({"cross": "1,2,3,4", "window": "nan,3", "opacity": "x"}) == {}


def test_with_page_sets_the_page_keys_and_keeps_the_viewers():
    current = {"case": "old", "cross": "1,2,3", "window": "300,120"}
    out = with_page(current, {"case": "Sample brain MRI", "method": "hirescam", "layer": None, "bogus": "x"})
    assert out == {"cross": "1,2,3", "window": "300,120", "case": "Sample brain MRI", "method": "hirescam"}
