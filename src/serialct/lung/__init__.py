"""Left and right lung masks by thresholding and morphology (the paper's "adaptive thresholding
and morphological operation"), and a plausibility check of the result (``lung_qc``).

Steps, on the CT re-oriented to LPS (array axes: inferior->superior, anterior->posterior,
right->left; the result is turned back to the CT's own orientation). Steps 1-5 run on a work
grid of about ``grid_mm`` (block means of the CT); steps 6-7 at full resolution:

1. body: the largest connected component above ``threshold_hu``, holes filled slice by slice;
2. candidates: voxels below ``threshold_hu`` in the holes of the body (so not outside air);
3. trachea and main bronchi: seeded in the top slices (a small, round, central component below
   ``airway_hu``) and grown slice by slice while each branch stays small, down to a little below
   the carina; removed with a margin so they no longer join the lungs;
4. the two largest components are the lungs; if the lungs touch and form one component, it is
   eroded (distance map thresholds) until it splits in two, and every voxel goes to the nearer
   part; the side comes from the x of each part (the patient's right has lower LPS x);
5. per side (never gluing the lungs), to keep vessels and consolidation inside, with one rule
   for every fill but small slice holes: it is kept only where it lies against the chest wall
   (most of the tissue around it outside the convex hull of both lungs, the other lung taken
   from the slices up to 30 mm around) or where the lung along its edge is denser than that
   lung's median by ``lesion_rim_delta_hu`` (a lesion in its ground-glass halo); a 3D fill
   that is mostly such is kept whole. So the mask's edge towards the heart, the great
   vessels, the hila, the aorta and the oesophagus is the threshold's: the hilum's rule is
   lungmask's (parenchyma with its intrapulmonary vessels, not the main pulmonary arteries
   and veins). The fills:
   - closing with a ball of ``closing_mm`` (exact, in mm, via distance maps);
   - column by column along z, gaps of at most ``z_gap_mm`` between lung above and below are
     filled (a dense lesion that takes the lung's whole outer rim on some slices), not near
     the airways or the other lung;
   - slice holes filled when small (vessels) or enclosed by lung in 3D (not the diaphragm
     dome ringed by the lung base);
   - concavities of each slice's convex hull added when at most ``subpleural_mm`` deep, or at
     most ``lesion_bite_mm`` deep when halo-lined, open widely onto the hull and not over the
     diaphragm;
   - floor: where the lung just above its lowest voxel in a z column is dense (a lesion lying
     on the diaphragm), the floor comes down to a quadratic dome fitted to the other columns'
     floors (a low quantile of them, so the heart under the lung does not lift or tilt it),
     near the edge of the lung's footprint only, and not where it would come down more than
     ``floor_fill_mm`` (the heart, not a lesion); a column whose lung above the floor is only
     a thin rim against the wall (no interior lung to probe) and whose floor lies well above
     the dome takes the lining of the nearest probed column (a recess lined to its edge); the
     apex the same way, upside down (a dense lesion capping the lung's top), without that
     last rule;
   - where the scan cuts the lung (lung in its first or last slice), none of this adds to that
     slice, and the floor (apex) there is not modelled: it is the scan's edge;
6. full resolution: the work grid's lung minus one block at its edge, and all it added by
   morphology, are lung; in the band one block wide around it, full-resolution voxels below
   ``threshold_hu`` are; each takes the side of the nearest work-grid lung voxel;
7. the outer edge at the partial-volume midpoint (``midpoint_edge``, :mod:`serialct.lung.edge`):
   the mask's outermost voxels below ``threshold_hu`` stay lung only below the HU halfway
   between the lung just inside them and soft tissue (about -405 HU for aerated lung), so an
   edge voxel counts as lung when more than half of it is.

Measured on real chest CT (benchmarks/real_lung_masks.py, benchmarks/real_lung_masks.md; five
series of normal lungs, two patients with a tumour, and one cut to the lower half of a chest):
against independent threshold masks of the same lungs at -320 HU, Dice 0.980-0.987 and volume
-2.1 to -0.4 % (at -400 HU: 0.984-0.991, +0.2 to +1.5 %; the tumours and their halo count as
lung here, not there); before the fill rule and the airway fixes 0.959-0.975 and +4.8 to
+8.4 % (trachea, hila, heart border, a paraspinal strip beside the aorta, the superior
mediastinum); against the CIP expert mask +1.9 %, Dice 0.984 (its edge lies at about -415 HU
on a 4 mm grid; with our edge at threshold_hu, before step 7, +5.0 % and 0.974).

Measured on synthetic phantoms (benchmarks/lung_validation.py, 300x512x512, 11 phantoms from
normal to 50 % involved): on the phantoms as drawn before issue 17, Dice 0.965-0.998 and volume
-3.0..+0.2 % (before the fill rule 0.966-0.994, -2.0..+1.5 %: the normal ones gained, the dense
ones lost consolidation lying bare against the mediastinum); on phantoms whose carina,
bronchi and fissures vary from patient to patient, Dice 0.970-0.997, volume -3.4..+0.1 %
(step 7 changes these by at most 0.0001 Dice and 0.05 volume points); with lung shapes,
domes and heart varying too, Dice 0.967-0.998, volume -3.6..+0.8 %; with the lesions moved
by lobes at published volume shares, Dice 0.958-0.998, volume -6.1..+0.2 %; 6-10 s and
0.72-0.78 GB peak per scan on 2 cores (timed beside other work). The floor fill needs work-grid
slices up to FLOOR_MAX_SLICE_MM thick (not the 6.7 mm demo phantoms).

Limits: consolidation against the heart or the mediastinum without a ground-glass halo, or on
the diaphragm under aerated lung (no dense lung just above it) or far from the lung's outer
edge (over the dome's top, next to the heart), stays partly out, and so does a dense lesion's
outermost 1-3 mm against the chest wall (the full-resolution step cannot see that edge); where
lesions hide most of a lung's floor the dome is extrapolated and can come a few mm below the
true diaphragm; dense lesions reaching the lung's lowest slices are treated like the diaphragm.
Thin volumes (a few slices) work: the closing repeats the edge slices where the lung reaches
the end of the volume, as if the lung went on.
"""

from serialct.lung.qc import lung_qc, lung_volume_cm3
from serialct.lung.segment import segment_lungs

__all__ = ["lung_qc", "lung_volume_cm3", "segment_lungs"]
