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
* :mod:`~subspacelab.shapes.splats` — part-labelled primitives, batched seeded Gaussian-mixture
  EM and the mixture-to-splat conversion with 3DGS field conventions (shapesplat,
  arXiv 2408.10906).
* :mod:`~subspacelab.shapes.pointmae` — Point-MAE / Gaussian-MAE in miniature: FPS and k-NN
  grouping in xyz or feature space, masked autoencoding, classification and segmentation heads.
* :mod:`~subspacelab.shapes.lidar` — procedural LiDAR street scenes traced from a virtual sensor,
  with class and sub-type labels (pointcloud_clustering, arXiv:2307.14605).
* :mod:`~subspacelab.shapes.edgeconv` — DGCNN-lite EdgeConv segmentation over batched k-NN graphs
  (Wang et al., arXiv:1801.07829).
* :mod:`~subspacelab.shapes.segloss` — Lovász-softmax, IoU, and the cross-scene cluster-contrast
  loss with Sinkhorn-balanced sub-centroids.
* :mod:`~subspacelab.shapes.cohorts` — synthetic single-cell cohorts, one cloud of cells ×
  markers per patient (hiponet, arXiv:2502.07746).
* :mod:`~subspacelab.shapes.wavelets` — HiPoNet's multi-view reweighted graphs and their graph
  and simplicial diffusion wavelets, dense and batched.
* :mod:`~subspacelab.shapes.blobs` — asymmetric genus-0 blob meshes with a shared connectivity
  (diffumatch, arXiv 2507.23715).
* :mod:`~subspacelab.shapes.spectral_prior` — priors over functional maps: the spectral diffusion
  prior (denoiser, VP and SDS losses), the axiomatic regularisers, ZoomOut, a small feature net.
"""
