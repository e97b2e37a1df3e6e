"""3D toolkit of the 3D and foundation-scale group (issue 18: shapesplat, pointcloud_clustering,
hiponet, diffumatch, diveup).

Pure maths on arrays and small ``nn.Module``s, no I/O. Submodules:

* :mod:`~subspacelab.shapes.clouds` — procedural shapes and scenes as labelled point clouds
  (sphere, torus, box, cylinder, cone; uniform on the surface, seeded) and the icosphere mesh.
* :mod:`~subspacelab.shapes.laplacian` — point-cloud and mesh Laplacians (cotangent weights with
  lumped mass; a k-NN heat-kernel graph) and their low eigenbases by shift-invert Lanczos;
  cross-checked in tests against robust-laplacian and on the sphere's known spectrum l(l+1).
* :mod:`~subspacelab.shapes.fmaps` — functional maps between eigenbases (Ovsjanikov et al.,
  SIGGRAPH 2012), point-to-point recovery, graph geodesics and the normalised geodesic error.
* :mod:`~subspacelab.shapes.chamfer` — the symmetric Chamfer distance, batched.
* :mod:`~subspacelab.shapes.pointnet` — a PointNet-style encoder (Qi et al., arXiv:1612.00593):
  shared per-point MLP and a symmetric max pool.
"""
