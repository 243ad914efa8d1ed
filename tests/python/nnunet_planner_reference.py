# Writes tests/data/nnunet/planner_expected_by_nnunet.json: nnU-Net v2's own
# ExperimentPlanner.plan_experiment run on each fingerprint + dataset.json of
# planner_cases.json, with file I/O and image readers stubbed (planning reads neither images
# nor the disk). Needs the sources of MIC-DKFZ/nnUNet (0e495086) and
# MIC-DKFZ/dynamic-network-architectures (d35f85c7) side by side in SOURCES, and Debian's
# python3-torch and numpy:
#   /usr/bin/python3 tests/python/nnunet_planner_reference.py SOURCES \
#       tests/data/nnunet/planner_cases.json tests/data/nnunet/planner_expected_by_nnunet.json
import json, sys, types, os
sys.path[:0] = [sys.argv[1]]
def stub(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m; return m
import os.path
fio = stub('batchgenerators.utilities.file_and_folder_operations',
           join=os.path.join, isfile=os.path.isfile, maybe_mkdir_p=lambda p: None,
           load_json=lambda f: json.load(open(f)), save_json=lambda *a, **k: None,
           subfiles=lambda *a, **k: [], isdir=os.path.isdir, subdirs=lambda *a, **k: [])
stub('batchgenerators'); stub('batchgenerators.utilities'); stub('batchgenerators.augmentations')
stub('batchgenerators.augmentations.utils', resize_segmentation=None)
stub('pandas'); stub('skimage'); stub('skimage.transform', resize=None)
class SimpleITKIO: pass
stub('nnunetv2.imageio.reader_writer_registry', determine_reader_writer_from_dataset_json=lambda *a: SimpleITKIO)
stub('nnunetv2.utilities.utils', get_filenames_of_train_images_and_targets=lambda *a: {'x': {'images': ['x']}})
os.environ.setdefault('nnUNet_n_proc_DA', '2'); os.environ.setdefault('nnUNet_preprocessed', '/nonexistent'); os.environ.setdefault('nnUNet_raw', '/nonexistent'); os.environ.setdefault('nnUNet_results', '/nonexistent')
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
import nnunetv2.experiment_planning.experiment_planners.default_experiment_planner as dep
dep.shutil = types.SimpleNamespace(copy=lambda *a: None)

def plan(fingerprint, dataset_json, gb=8.0, name='Dataset999_Test'):
    p = ExperimentPlanner.__new__(ExperimentPlanner)
    # the constructor's plain values, then the fingerprint instead of the disk
    p.dataset_name = name; p.suppress_transpose = False; p.raw_dataset_folder = '/nonexistent'
    p.dataset_json = dataset_json; p.dataset = {'x': {'images': ['x']}}; p.dataset_fingerprint = fingerprint
    p.anisotropy_threshold = dep.ANISO_THRESHOLD
    p.UNet_base_num_features = 32; p.UNet_class = dep.PlainConvUNet
    p.UNet_reference_val_3d = 560000000; p.UNet_reference_val_2d = 85000000
    p.UNet_reference_com_nfeatures = 32; p.UNet_reference_val_corresp_GB = 8
    p.UNet_reference_val_corresp_bs_2d = 12; p.UNet_reference_val_corresp_bs_3d = 2
    p.UNet_featuremap_min_edge_length = 4
    p.UNet_blocks_per_stage_encoder = (2,) * 14; p.UNet_blocks_per_stage_decoder = (2,) * 13
    p.UNet_min_batch_size = 2; p.UNet_max_features_2d = 512; p.UNet_max_features_3d = 320
    p.max_dataset_covered = 0.05; p.UNet_vram_target_GB = gb; p.lowres_creation_threshold = 0.25
    p.preprocessor_name = 'DefaultPreprocessor'; p.plans_identifier = 'nnUNetPlans'
    p.overwrite_target_spacing = None; p.plans = None
    p.save_plans = lambda plans: dep.recursive_fix_for_json_export(plans)
    import io, contextlib
    with contextlib.redirect_stdout(io.StringIO()):
        return p.plan_experiment()

if __name__ == '__main__':
    cases = json.load(open(sys.argv[2]))
    out = {}
    for name, c in cases.items():
        out[name] = plan(c['fingerprint'], c['dataset_json'], c.get('gpu_memory_target_gb', 8.0))
    json.dump(out, open(sys.argv[3], 'w'), indent=1)
