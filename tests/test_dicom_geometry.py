import numpy as np
import pytest

from serialct.dicom import geometry
from serialct.errors import InputError

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _stack(z_values, orientation=AXIAL, xy=(5.0, 7.0)):
    files = [f"f{i}" for i in range(len(z_values))]
    positions = [(xy[0], xy[1], z) for z in z_values]
    return (
        files,
        positions,
        geometry.stack_slices(
            files, positions, [orientation] * len(files), [(0.5, 0.6)] * len(files)
        ),
    )


def test_slices_sorted_along_normal_not_by_input_order():
    _, _, stack = _stack([3.0, -1.0, 1.0])
    assert stack.order == (1, 2, 0)
    assert np.allclose(stack.offsets, [-1, 1, 3])
    assert np.allclose(stack.origin, [5, 7, -1])
    assert np.allclose(stack.direction, np.eye(3))
    assert stack.pixel_spacing == (0.5, 0.6)


def test_mixed_orientation_and_duplicates_refused():
    files = ["a", "b"]
    with pytest.raises(InputError, match="b: tag ImageOrientationPatient"):
        geometry.stack_slices(
            files, [(0, 0, 0), (0, 0, 1)], [AXIAL, (0, 1, 0, 0, 0, -1)], [(1, 1)] * 2
        )
    with pytest.raises(InputError, match="repeats the slice position"):
        _stack([0.0, 1.0, 1.0])


def test_tilt_detected_from_geometry_and_from_tag():
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    tilted = (1.0, 0.0, 0.0, 0.0, c, -s)
    _, positions, stack = _stack([0.0, 2.0, 4.0], orientation=tilted)
    assert geometry.tilt_angle_deg(stack, positions) == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(InputError, match=r"gantry tilt 20\.0 deg in f0: .*not supported"):
        geometry.check_tilt("f0", 0.0, geometry.tilt_angle_deg(stack, positions))
    with pytest.raises(InputError, match=r"gantry tilt 12\.0 deg"):
        geometry.check_tilt("f0", -12.0, 0.0)
    geometry.check_tilt("f0", 0.0, 0.01)


def test_spacing_stats_and_uniform_grid():
    steps = np.array([1.0, 1.0, 2.0, 1.0])
    stats = geometry.spacing_stats(steps)
    assert stats == {
        "median": 1.0,
        "min": 1.0,
        "max": 2.0,
        "std": pytest.approx(0.433, abs=1e-3),
        "gaps": 1,
    }
    assert not geometry.is_uniform(steps)
    assert geometry.is_uniform(np.array([1.0, 1.005, 0.995]))
    grid = geometry.uniform_offsets(np.array([0.0, 1.0, 2.0, 4.0, 5.0]))
    assert np.allclose(grid, [0, 1, 2, 3, 4, 5])


def test_resample_is_exact_for_a_linear_field():
    offsets = np.array([0.0, 1.0, 3.5, 4.0])
    stack = (offsets[:, None, None] * 10.0 + np.zeros((1, 2, 3))).astype(np.float32)
    new = np.linspace(0.0, 4.0, 9)
    out = geometry.resample_along_normal(stack, offsets, new)
    assert out.shape == (9, 2, 3)
    assert np.allclose(out[:, 0, 0], new * 10.0)
