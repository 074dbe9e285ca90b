import pytest

from pipeline.arena import recommend
from pipeline.errors import PipelineError


def test_recommendation_adds_the_margin_and_aligns():
    assert recommend(13_792, 10, 256) == 15_440  # 13,792 * 1.1 + 256 = 15,427.2 -> next multiple of 16
    assert recommend(13_792, 0, 0) == 13_792
    assert recommend(13_793, 0, 0) % 16 == 0


@pytest.mark.parametrize("pct,extra", [(-1, 0), (500, 0), (10, -5), (10, 1 << 20)])
def test_absurd_margins_are_refused(pct, extra):
    with pytest.raises(PipelineError, match="margin"):
        recommend(10_000, pct, extra)
