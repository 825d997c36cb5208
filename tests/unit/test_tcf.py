"""TC strings: the decoder against the IAB Tech Lab's published reference strings (the
test vectors of its GPP Java library, where purposes are 0-based: its {0..9} is our
purposes 1..10), the category mapping, malformed strings, and the order of consent
signals every consent read applies."""

from __future__ import annotations

import base64

import pytest

from models import gpp, tcf
from models.consent import NOTHING, CmpPolicy, resolve

#: IAB Tech Lab, iabgpp-java, TcfEuV2Test.testDecode4 (CMP 14 v2, vendor list 174).
REFERENCE_4 = (
    "CPi8wgAPi8wgAAOACBENCuCoAP_AAEfAACiQJHNd_H__bX9n-f7_6ft0eY1f9_r37uQzDhfNk-8F3L_W_LwX_2E7NF36tq4KmR4ku1LBIUNtHMnUDUmx"
    "aokVrzHsak2cpzNKJ_BkknsZe2dYGF9vm5tj-QKZ7_5_d3f52T_9_9v-39z33913v3d93-_13LjdV5_9H_v9fR_b8_Kf9_5-_4v8_____3_e______8AEEgg"
    "CTDVuIAuxLHAm0DCKBECMKwkKoFABBQDC0QGADg4KdlYBPrCBAAgFAEYEQIcAUYEAgAAAgCQiACQIsEAAAIgEAAIAEQiEABAwCCgAsDAIAAQDQMUQoABAkIM"
    "iAiKUwICIEggJbKhBKC6Q0wgCrLACgkRsFAAiAAAUgACAsHAMESAlYsECTFG-QAjBCgFEqFaAGGgAwABBI4RABgACCRwqADAAEEjgA"
)
#: testDecode3: CMP 880, vendor list 48, nothing consented, disclosed/allowed vendor segments.
REFERENCE_3 = (
    "CPcqBNJPcqBNJNwAAAENAwCAAAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAA.QGLtV_T9fb2vj-_Z99_tkeYwf95y3p-wzhheMs-8NyZeH_B4Wv2MyvBX4JiQ"
    "KGRgksjLBAQdtHGlcTQgBwIlViTLMYk2MjzNKJrJEilsbO2dYGD9Pn8HT3ZCY70-vv__7v3ff_3g.IGLtV_T9fb2vj-_Z99_tkeYwf95y3p-wzhheMs-8NyZ"
    "eH_B4Wv2MyvBX4JiQKGRgksjLBAQdtHGlcTQgBwIlViTLMYk2MjzNKJrJEilsbO2dYGD9Pn8HT3ZCY70-vv__7v3ff_3g"
)
#: testDecode6: CMP 14 v3, purposes 1-10, an empty publisher TC segment.
REFERENCE_6 = "COv_eg6Ov_eg6AOADBENAaCgAP_AAH_AACiQAVEUQQoAIQAqIoghAAQgAA.YAAAAAAAAAAAAAAAAAA"


def encode(purposes: set[int], vendors: set[int] = frozenset(), cmp_id: int = 300, cmp_version: int = 7) -> str:  # type: ignore[assignment]
    """A core-segment TC string (policy 4, vendor bitfield) for the tests."""
    fields: list[tuple[int, int]] = [(2, 6), (17_000_000_000, 36), (17_000_000_000, 36), (cmp_id, 12), (cmp_version, 12), (1, 6),
                                     (4 * 64 + 13, 12), (80, 12), (4, 6), (0, 1), (0, 1), (0, 12)]  # fmt: skip
    fields.append((sum(1 << (24 - p) for p in purposes), 24))
    fields += [(0, 24), (0, 1), (4 * 64 + 4, 12)]
    top = max(vendors, default=0)
    fields += [(top, 16), (0, 1), (sum(1 << (top - v) for v in vendors), top)]
    bits = "".join(format(value, f"0{n}b") for value, n in fields if n)
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_the_published_reference_strings_decode_to_their_published_values() -> None:
    four = tcf.decode(REFERENCE_4)
    assert (four.version, four.cmp_id, four.cmp_version, four.consent_screen, four.consent_language) == (2, 14, 2, 1, "EN")
    assert (four.vendor_list_version, four.policy_version, four.is_service_specific, four.publisher_cc) == (174, 2, True, "US")
    assert four.special_features == {1} and four.purposes_consent == set(range(1, 11))
    assert four.purposes_li == {2, 6, 7, 8, 9, 10} and not four.purpose_one_treatment
    assert len(four.vendors_consent) == 772
    three = tcf.decode(REFERENCE_3)
    assert (three.cmp_id, three.cmp_version, three.vendor_list_version, three.publisher_cc) == (880, 0, 48, "AA")
    assert three.purposes_consent == frozenset() and three.vendors_consent == frozenset()
    assert three.publisher_purposes_consent == frozenset()  # the "YAAA…" publisher segment
    six = tcf.decode(REFERENCE_6)
    assert (six.cmp_id, six.cmp_version, six.vendor_list_version) == (14, 3, 26)
    assert six.purposes_consent == set(range(1, 11)) and len(six.vendors_consent) == 9


def test_categories_need_every_purpose_they_name() -> None:
    purposes = tcf.DEFAULT_PURPOSES
    assert tcf.categories(tcf.decode(REFERENCE_4), purposes) == {"necessary", "analytics", "personalization", "marketing"}
    # an empty publisher segment (as CMPs send it) does not withdraw the core consents
    assert tcf.categories(tcf.decode(REFERENCE_6), purposes) == {"necessary", "analytics", "personalization", "marketing"}
    assert tcf.categories(tcf.decode(REFERENCE_3), purposes) == {"necessary"}
    only_content = tcf.decode(encode({1, 5, 6}))
    assert tcf.categories(only_content, purposes) == {"necessary", "personalization"}
    assert tcf.categories(tcf.decode(encode({5, 6})), purposes) == {"necessary"}  # no purpose 1: no storage, nothing
    assert tcf.categories(tcf.decode(encode({1, 8, 9, 10})), purposes) == {"necessary", "analytics"}
    # with a vendor id, that vendor's consent is needed too
    assert tcf.categories(tcf.decode(encode({1, 5, 6}, {3, 9})), purposes, vendor_id=9) == {"necessary", "personalization"}
    assert tcf.categories(tcf.decode(encode({1, 5, 6}, {3})), purposes, vendor_id=9) == {"necessary"}


def test_the_encoder_and_decoder_agree() -> None:
    tc = tcf.decode(encode({1, 3, 24}, {1, 2, 40}, cmp_id=4000, cmp_version=4095))
    assert (tc.cmp_id, tc.cmp_version, tc.policy_version, tc.consent_language) == (4000, 4095, 4, "EN")
    assert tc.purposes_consent == {1, 3, 24} and tc.vendors_consent == {1, 2, 40}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "bad_length"),
        ("x" * 9000, "bad_length"),
        ("!!!not base64!!!", "bad_base64"),
        ("CPi8wgAPi8wg", "truncated"),
        ("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", "unsupported_version"),  # a TCF v1 string
        (REFERENCE_4[:60], "truncated"),
    ],
)
def test_malformed_strings_have_a_reason(value: str, reason: str) -> None:
    with pytest.raises(tcf.TcfError) as caught:
        tcf.decode(value)
    assert caught.value.reason == reason


def test_purpose_tables_are_validated() -> None:
    assert tcf.parse_purposes("analytics:1,8;personalization:1,5,6") == {"analytics": {1, 8}, "personalization": {1, 5, 6}}
    for bad in ("analytics", "analytics:", "analytics:0", "analytics:25", "x:1;:2"):
        with pytest.raises(ValueError):
            tcf.parse_purposes(bad)


def test_the_order_of_signals() -> None:
    invalid: list[str] = []
    policy = CmpPolicy(invalid=invalid.append)
    default = ("necessary", "analytics", "personalization")
    content = encode({1, 5, 6})
    # 1. GPC and DNT restrict whatever else is set
    assert resolve({"sec-gpc": "1"}, {"euconsent-v2": REFERENCE_4, "p13n_consent": "analytics"}, default, policy) == NOTHING
    # 2. the CMP's TC string wins over our cookie and the default
    assert resolve({}, {"euconsent-v2": content, "p13n_consent": "analytics.marketing"}, default, policy) == {
        "necessary",
        "personalization",
    }
    # an unreadable one grants nothing, and says why
    assert resolve({}, {"euconsent-v2": "garbage!", "p13n_consent": "analytics"}, default, policy) == NOTHING
    assert invalid == ["bad_base64"]
    # 3. our cookie, then 4. the default
    assert resolve({}, {"p13n_consent": "analytics"}, default, policy) == {"necessary", "analytics"}
    assert resolve({}, {}, default, policy) == set(default)
    # TC strings not read when the cookie name is empty
    assert resolve({}, {"euconsent-v2": content}, default, CmpPolicy(cookie="")) == set(default)
    # what a consent record keeps of the TC string
    record = policy.record({"euconsent-v2": content})
    assert record == {"cmp_id": 300, "cmp_version": 7, "policy_version": 4, "vendor_list_version": 80, "tc_string": content}
    assert policy.record({"euconsent-v2": "garbage!"}) is None and policy.record({}) is None


#: GPP strings with published decodings: LiveRamp's iabconsent fixtures (US National
#: only; with US Privacy; EU TCF and US Privacy) and the IAB Tech Lab's UsNat test string
#: (every opt-out taken, GPC set) under a header naming section 7.
GPP_NOT_OPTED_OUT = "DBABL~BVVqAAEABAA.QA"
GPP_WITH_US_PRIVACY = "DBABzw~1YNN~BVVqAAEABAA.QA"
GPP_TCF_AND_US_PRIVACY = "DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN"
GPP_OPTED_OUT_GPC = "DBABL~BVVVkkkkkpFY.YA"


def test_gpp_strings_decode_to_their_published_values() -> None:
    plain = gpp.decode(GPP_NOT_OPTED_OUT)
    assert plain.section_ids == (7,) and plain.usnat == gpp.UsNat(1, 2, 2, 2, False) and not plain.usnat.opted_out
    assert gpp.decode(GPP_WITH_US_PRIVACY).section_ids == (6, 7)
    assert gpp.decode(GPP_WITH_US_PRIVACY).usnat == gpp.UsNat(1, 2, 2, 2, False)
    other = gpp.decode(GPP_TCF_AND_US_PRIVACY)
    assert other.section_ids == (2, 6) and other.usnat is None
    out = gpp.decode(GPP_OPTED_OUT_GPC).usnat
    assert out is not None and out.opted_out and out.gpc and out.sale_opt_out == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "bad_length"),
        ("DBABL", "section_count"),
        ("DBABL~a~b", "section_count"),
        ("BBABL~BVVqAAEABAA.QA", "bad_header"),
        ("DBABL~B!", "bad_base64"),
        ("DBABL~B", "truncated"),
    ],
)
def test_malformed_gpp_strings_have_a_reason(value: str, reason: str) -> None:
    with pytest.raises(gpp.GppError) as caught:
        gpp.decode(value)
    assert caught.value.reason == reason


def test_a_gpp_opt_out_withholds_marketing_and_its_gpc_everything() -> None:
    invalid: list[str] = []
    policy = CmpPolicy(invalid=invalid.append)
    everything = {"p13n_consent": "analytics.personalization.marketing"}
    all_four = {"necessary", "analytics", "personalization", "marketing"}
    assert resolve({}, {**everything, "__gpp": GPP_NOT_OPTED_OUT}, (), policy) == all_four
    opted_out = "DBABL~BVVVkkkkkpFY"  # the same opt-outs, without the GPC subsection
    assert resolve({}, {**everything, "__gpp": opted_out}, (), policy) == {"necessary", "analytics", "personalization"}
    # on top of a TC string as well
    with_tc = {"euconsent-v2": encode(set(range(1, 11))), "__gpp": opted_out}
    assert resolve({}, with_tc, (), policy) == {"necessary", "analytics", "personalization"}
    assert resolve({}, {**everything, "__gpp": GPP_OPTED_OUT_GPC}, (), policy) == NOTHING
    assert resolve({}, {**everything, "__gpp": "DBABL~!!"}, (), policy) == NOTHING and invalid == ["gpp_bad_base64"]
    assert resolve({}, {**everything, "__gpp": opted_out}, (), CmpPolicy(gpp_cookie="")) == all_four


def test_a_tc_string_is_worked_out_once_and_an_unreadable_one_counted_each_time() -> None:
    invalid: list[str] = []
    policy = CmpPolicy(invalid=invalid.append)
    for _ in range(3):
        assert resolve({}, {"euconsent-v2": REFERENCE_4}, (), policy) == {
            "necessary",
            "analytics",
            "personalization",
            "marketing",
        }
        assert resolve({}, {"euconsent-v2": "bad!"}, (), policy) == NOTHING
    assert set(policy._seen) == {REFERENCE_4, "bad!"} and invalid == ["bad_base64"] * 3
    # a vendor id makes the vendor section count (and is worked out with it)
    assert CmpPolicy(vendor_id=2).categories({"euconsent-v2": REFERENCE_4}) == {
        "necessary",
        "analytics",
        "personalization",
        "marketing",
    }
    assert CmpPolicy(vendor_id=3).categories({"euconsent-v2": encode({1, 5, 6}, {2})}) == NOTHING
