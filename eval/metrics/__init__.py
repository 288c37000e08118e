"""The paper's metrics as ``torchmetrics.Metric`` s whose states reduce across DDP ranks.

- :mod:`eval.metrics.lse`: LSE-C / LSE-D (syncnet_python).
- :mod:`eval.metrics.fid`: FID (pytorch-fid).
- :mod:`eval.metrics.niqe`: NIQE (the MATLAB ``niqe`` algorithm with the LIVE pristine model).
- :mod:`eval.metrics.fvd`: FVD (StyleGAN-V's I3D protocol).
- :mod:`eval.metrics.emotion`: Acc_emo (Emotion-FAN).
- :mod:`eval.metrics.efid`: E-FID (Deep3DFaceRecon expression coefficients).
- :mod:`eval.metrics.frechet`: the one Fréchet distance they share.
"""
