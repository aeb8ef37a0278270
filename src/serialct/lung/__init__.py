"""Left and right lung masks by thresholding and morphology (the paper's "adaptive thresholding
and morphological operation"), and a plausibility check of the result (``lung_qc``).

Steps, on the CT re-oriented to LPS (array axes: inferior->superior, anterior->posterior,
right->left; the result is turned back to the CT's own orientation). Steps 1-5 run on a work
grid of about ``grid_mm`` (block means of the CT); step 6 returns to full resolution:

1. body: the largest connected component above ``threshold_hu``, holes filled slice by slice;
2. candidates: voxels below ``threshold_hu`` in the holes of the body (so not outside air);
3. trachea and main bronchi: seeded in the top slices (a small, round, central component below
   ``airway_hu``) and grown slice by slice while each branch stays small, down to a little below
   the carina; removed with a margin so they no longer join the lungs;
4. the two largest components are the lungs; if the lungs touch and form one component, it is
   eroded (distance map thresholds) until it splits in two, and every voxel goes to the nearer
   part; the side comes from the x of each part (the patient's right has lower LPS x);
5. per side (never gluing the lungs), to keep vessels and consolidation inside:
   - closing with a ball of ``closing_mm`` (exact, in mm, via distance maps);
   - column by column along z, gaps of at most ``z_gap_mm`` between lung above and below are
     filled (a dense lesion that takes the lung's whole outer rim on some slices), not near
     the airways or the other lung;
   - slice holes filled when small or enclosed by lung in 3D (not the diaphragm dome ringed by
     the lung base);
   - concavities of each slice's convex hull added when at most ``subpleural_mm`` deep, or at
     most ``lesion_bite_mm`` deep when the lung along their edge is denser than that lung's
     median by ``lesion_rim_delta_hu`` (a consolidation inside its ground-glass halo: the heart
     and the mediastinum border normal lung), they open widely onto the hull and do not lie
     over the diaphragm;
   - floor: where the lung just above its lowest voxel in a z column is dense (a lesion lying
     on the diaphragm), the floor comes down to a quadratic dome fitted to the other columns'
     floors (a low quantile of them, so the heart under the lung does not lift or tilt it),
     near the edge of the lung's footprint only, and not where it would come down more than
     ``floor_fill_mm`` (the heart, not a lesion); a column whose lung above the floor is only
     a thin rim against the wall (no interior lung to probe) and whose floor lies well above
     the dome takes the lining of the nearest probed column (a recess lined to its edge); the
     apex the same way, upside down (a dense lesion capping the lung's top), without that
     last rule;
6. full resolution: the work grid's lung minus one block at its edge, and all it added by
   morphology, are lung; in the band one block wide around it, full-resolution voxels below
   ``threshold_hu`` are; each takes the side of the nearest work-grid lung voxel.

Measured on synthetic phantoms (benchmarks/lung_validation.py, 300x512x512, 8 phantoms from
normal to 50 % involvement that the fills were tuned on, plus 3 dense ones first held out):
Dice 0.976-0.994 and volume -1.8..+1.5 % on the 8 (the dense basal case, 45 % involved, half
consolidated: 0.976 and -1.8 %; without the floor and apex fills 0.959 and -6.4 %); on the
3 dense ones (40-48 % involved, half consolidated) Dice 0.966-0.976, volume -2.0..-1.9 %
(the wall-column rule of the floor fill was added after all 11 had been seen);
2-3.5 s, ~0.74 GB peak per scan on 2 cores. The floor fill needs work-grid slices up to
FLOOR_MAX_SLICE_MM thick (not the 6.7 mm demo phantoms).

Limits: consolidation against the heart, or on the diaphragm under aerated lung (no dense
lung just above it) or far from the lung's outer edge (over the dome's top, next to the
heart), stays partly out, and so does a dense lesion's outermost 1-3 mm against the chest
wall (the full-resolution step cannot see that edge); where lesions hide most of a lung's
floor the dome is extrapolated and can come a few mm below the true diaphragm; dense lesions
reaching the lung's lowest slices are treated like the diaphragm. Thin volumes (a few
slices) work: the closing repeats the edge slices where the lung reaches the end of the
volume, as if the lung went on.
"""

from serialct.lung.qc import lung_qc, lung_volume_cm3
from serialct.lung.segment import segment_lungs

__all__ = ["lung_qc", "lung_volume_cm3", "segment_lungs"]
