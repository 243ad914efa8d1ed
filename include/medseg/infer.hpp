// Everything in infer/: sliding-window inference with nnU-Net's window positions, Gaussian
// weighting and mirroring, argmax to a label map, and largest-component post-processing.
#pragma once

#include "infer/postprocess.hpp"
#include "infer/deploy.hpp"
#include "infer/sliding_window.hpp"
