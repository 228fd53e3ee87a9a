"""Networks and spectral-bias control layers (Ulyanov et al. CVPR 2018; Shi et al. IJCV 2022)."""
from .inputs import INPUTS, make_input
from .layers import (GaussianUpsample, LipschitzBatchNorm2d, LipschitzConv2d, MeanOnlyNorm,
                     SampleBatchNorm2d, grouped_sigmas, lipschitz_convs, sigma_max,
                     spectral_norms)
from .nets import (NETS, OPTION_CHOICES, OPTION_HELP, DIPNet, NetSpec, build_net, code_shape,
                   count_parameters, net_options)

__all__ = ["build_net", "make_input", "spectral_norms", "LipschitzConv2d", "GaussianUpsample",
           "MeanOnlyNorm", "LipschitzBatchNorm2d", "SampleBatchNorm2d", "DIPNet", "code_shape",
           "count_parameters", "lipschitz_convs", "sigma_max", "grouped_sigmas", "NETS",
           "NetSpec", "net_options", "OPTION_HELP", "OPTION_CHOICES", "INPUTS"]
