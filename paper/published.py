"""Published numbers the tables quote: the one place they are written down.

Means: ``MEANS[task][(data group, setting)] = [(label, metric, value), ...]``, the setting as
``setting_key`` writes it.  Per-image values: ``PER_IMAGE[task][label] = {display name: value}``,
display names from ``DISPLAY[task]`` (file stem -> the paper's name).
Sources: Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018 (Table 1 inpainting,
Table 2 super-resolution, Sec. 4 denoising); Shi, Mettes, Maji, Snoek, "On Measuring and
Controlling the Spectral Bias of the Deep Image Prior", IJCV 2022 (denoising table).
"""

# inpainting/bernoulli file stems -> the names of DIP's Table 1, in its column order
INPAINT_NAMES = {"barbara": "Barbara", "boat": "Boat", "house": "House", "Lena512": "Lena",
                 "peppers256": "Peppers", "Cameraman256": "C.man", "couple": "Couple",
                 "fingerprint": "Finger", "hill": "Hill", "man": "Man", "montage": "Montage"}
_T1 = list(INPAINT_NAMES.values())
DIP_INPAINT = dict(zip(_T1, [32.22, 33.06, 39.16, 36.16, 33.05, 29.8, 32.52, 32.84, 32.77,
                             32.20, 34.54]))          # DIP Table 1, "DIP" row
CSC_INPAINT = dict(zip(_T1, [28.14, 31.44, 34.58, 35.04, 31.11, 27.90, 31.18, 31.34, 32.35,
                             31.92, 28.05]))          # DIP Table 1, Papyan et al. (CSC) row

DISPLAY = {"inpainting": INPAINT_NAMES}
PER_IMAGE = {"inpainting": {"DIP (published, Table 1)": DIP_INPAINT,
                            "CSC Papyan et al. (published)": CSC_INPAINT}}

MEANS = {
    "denoising": {("denoising", "sigma=25"): [
        ("DIP, 1800 it. (Shi et al.)", "psnr", 29.22), ("DIP, EMA", "psnr", 30.43),
        ("DIP, two runs averaged", "psnr", 31.00), ("CBM3D", "psnr", 31.42),
        ("NLM", "psnr", 30.26)]},
    "inpainting": {("inpainting/bernoulli", ""): [
        ("DIP (Table 1 mean)", "psnr", 33.48),
        ("CSC Papyan et al. (Table 1 mean)", "psnr",
         round(sum(CSC_INPAINT.values()) / len(CSC_INPAINT), 2))]},
    "super_resolution": {
        ("super_resolution/Set5", "factor=4"): [("bicubic (DIP Table 2)", "y_psnr", 28.43),
                                                ("DIP (DIP Table 2)", "y_psnr", 29.90),
                                                ("SRResNet (DIP Table 2)", "y_psnr", 32.10)],
        ("super_resolution/Set14", "factor=4"): [("bicubic (DIP Table 2)", "y_psnr", 26.05),
                                                 ("DIP (DIP Table 2)", "y_psnr", 27.00),
                                                 ("SRResNet (DIP Table 2)", "y_psnr", 28.53)]},
}


def setting_key(settings: dict) -> str:
    """``{"factor": 4}`` -> ``"factor=4"`` (numbers without trailing zeros)."""
    return ",".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                    for k, v in sorted(settings.items()))
