// The trainer in one include: train::Trainer (the loop, hooks, progress line and metrics log),
// checkpoints with exact resume, and JSON configs in MedicalSeg's shape.
#pragma once

#include "train/checkpoint.hpp"
#include "train/report.hpp"
#include "train/trainer.hpp"
#include "train/config.hpp"
#include "train/runtime.hpp"
#include "train/transform_chain.hpp"
