// nnU-Net in one include: its dynamic U-Net (models::DynamicUNet<B>, PlainConvUNet and
// ResidualEncoderUNet) and its automation (nnunet::): raw-dataset checks, the fingerprint,
// the default experiment planner and its plans, the cross-validation folds, preprocessing,
// training a fold, predicting with folds and configurations, evaluating folders.
#pragma once

#include "models/dynamic_unet.hpp"
#include "nnunet/dataset.hpp"
#include "nnunet/evaluation.hpp"
#include "nnunet/find_best.hpp"
#include "nnunet/fingerprint.hpp"
#include "nnunet/planner.hpp"
#include "nnunet/plans.hpp"
#include "nnunet/predict.hpp"
#include "nnunet/preprocessing.hpp"
#include "nnunet/recipe.hpp"
#include "nnunet/run.hpp"
#include "nnunet/splits.hpp"
#include "nnunet/training.hpp"
