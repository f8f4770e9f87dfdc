"""Datasets and transforms: synthetic scenes, folder layout, VOC and SBD train_aug, joint transforms."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision import tv_tensors

from mfnet_zoo.data import (CONTEXT_CLASSES, SYNTHETIC_CLASSES, VOC_CLASSES, FixScaleCrop, FolderDataset,
                            RandomGaussianBlur, RandomScale, RandomScaleCrop, SyntheticShapes, VOCAugSegmentation,
                            VOCSegmentation, apply_orientation, build_dataset, build_eval_transforms,
                            build_train_transforms, eval_transforms, load_image, load_mask, paper_eval_transforms,
                            paper_train_transforms, pil_gaussian_blur, render_context_scene, render_scene,
                            train_transforms, write_synthetic_dataset)
from mfnet_zoo.data.synthetic import _shape_mask


def test_synthetic_scenes_are_deterministic_and_varied():
    a, b = render_scene(3, 64, seed=5), render_scene(3, 64, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(render_scene(4, 64, seed=5)[1], a[1])
    image, mask = a
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64) and mask.dtype == torch.int64
    assert 0 <= image.min() and image.max() <= 1
    labels = torch.cat([render_scene(i, 64)[1].unique() for i in range(40)]).unique()
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", [1, 2, 3, 4, 5])
def test_every_shape_is_bounded(kind):
    # regression: the triangle's half-planes once left it open on one side, so it filled the image
    y, x = torch.meshgrid(torch.arange(-50.0, 51.0), torch.arange(-50.0, 51.0), indexing="ij")
    inside = _shape_mask(kind, x, y, 10.0)
    assert inside.sum() > 0.5 * 100  # a solid shape, not a sliver
    assert (x[inside] ** 2 + y[inside] ** 2).max() <= (1.2 * 10.0) ** 2 + 1e-3


def test_synthetic_dataset_items_and_transforms():
    ds = SyntheticShapes(5, 32, seed=0, transforms=train_transforms(32, None, True))
    image, mask = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and mask.dtype == torch.int64
    raw = SyntheticShapes(5, 32, seed=0)[0]
    assert raw[0].dtype == torch.uint8 and isinstance(raw[1], tv_tensors.Mask)
    with pytest.raises(IndexError):
        ds[5]


def test_write_synthetic_then_read_as_folder(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", {"train": 3, "val": 2}, size=32, seed=0)
    ds = FolderDataset(root, "train")
    assert len(ds) == 3 and ds.classes[0] == "background" and ds.num_classes == 6
    image, mask = ds[1]
    expected_image, expected_mask = render_scene(1, 32, seed=0)
    assert torch.equal(mask, expected_mask)
    assert torch.equal(image, (expected_image * 255).round().to(torch.uint8))
    assert len(FolderDataset(root, "val")) == 2


def test_folder_errors_name_the_file(tmp_path):
    root = write_synthetic_dataset(tmp_path / "d", {"train": 2}, size=32)
    with pytest.raises(FileNotFoundError, match="images/val"):
        FolderDataset(root, "val")
    (root / "masks" / "train" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match="00001.png"):
        FolderDataset(root, "train")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(root / "masks" / "train" / "00001.png")
    with pytest.raises(ValueError, match=r"00001.png: image is \(32, 32\) but its mask is \(16, 32\)"):
        FolderDataset(root, "train")[1]
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(root / "masks" / "train" / "00001.png")
    with pytest.raises(ValueError, match=r"00001.png: mask labels \[9\] are outside \[0, 6\)"):
        FolderDataset(root, "train")[1]
    (root / "images" / "train" / "00000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*00000.png"):
        FolderDataset(root, "train")[0]


def test_load_image_converts_modes_and_exif(tmp_path):
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((5, 7), 100, np.uint8)).save(gray)
    assert load_image(gray).shape == (3, 5, 7)
    deep = tmp_path / "d.png"
    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(deep)
    assert load_image(deep).dtype == torch.uint8 and load_image(deep).max() == 255
    rotated = tmp_path / "r.jpg"
    image = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    image.save(rotated, exif=exif)
    assert load_image(rotated).shape == (3, 20, 10)


def _tagged(image: Image.Image, path, orientation: int) -> None:
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


def test_orientation_turns_as_pil_exif_transpose(tmp_path):
    stored = np.arange(3 * 4, dtype=np.uint8).reshape(3, 4) * 20
    for orientation in range(1, 9):
        _tagged(Image.fromarray(stored), tmp_path / "o.png", orientation)
        with Image.open(tmp_path / "o.png") as image:
            expected = torch.from_numpy(np.asarray(ImageOps.exif_transpose(image)).copy())
        assert torch.equal(apply_orientation(torch.from_numpy(stored), orientation), expected), orientation
        assert torch.equal(load_image(tmp_path / "o.png")[0], expected), orientation  # predict's loader


def test_folder_pairs_a_tagged_photo_with_its_mask(tmp_path):
    # a "phone photo": stored 32 x 48 (landscape) with EXIF orientation 6 (shown turned 90 degrees clockwise);
    # its mask is drawn on the stored pixels: class 1 where the photo is bright (its left third)
    root = tmp_path / "d"
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    pixels = np.full((32, 48, 3), 30, np.uint8)
    pixels[:, :16] = 220
    labels = np.zeros((32, 48), np.uint8)
    labels[:, :16] = 1
    _tagged(Image.fromarray(pixels), root / "images" / "train" / "photo.jpg", 6)
    Image.fromarray(labels, mode="L").save(root / "masks" / "train" / "photo.png")
    image, mask = FolderDataset(root, "train", num_classes=2)[0]
    assert image.shape == (3, 48, 32) and mask.shape == (48, 32)  # both upright, as predict shows the photo
    assert torch.equal(image[0] > 128, mask == 1)  # and still aligned: bright pixels are class 1
    assert (mask[:16] == 1).all() and (mask[16:] == 0).all()  # the left third, turned to the top
    assert torch.equal(image, load_image(root / "images" / "train" / "photo.jpg"))
    assert torch.equal(mask, load_mask(root / "masks" / "train" / "photo.png", orientation=6))
    # a mask already turned upright (not in the stored grid): an error that says why
    Image.fromarray(np.ascontiguousarray(np.rot90(labels, -1)), mode="L").save(root / "masks" / "train" / "photo.png")
    with pytest.raises(ValueError, match=r"image is \(48, 32\) but its mask is \(32, 48\) \(after the image's EXIF "
                                         r"orientation 6, applied to both: the mask must be in the image's stored"):
        FolderDataset(root, "train")[0]
    # a mask with an orientation of its own that differs from its image's: which to follow is unclear
    _tagged(Image.fromarray(labels, mode="L"), root / "masks" / "train" / "photo.png", 3)
    with pytest.raises(ValueError, match=r"photo.png' has EXIF orientation 3, its image .*photo.jpg' 6"):
        FolderDataset(root, "train")[0]


def test_train_transforms_pad_with_ignore_and_scale():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(20, 30, dtype=torch.int64))
    x, y = train_transforms(48, None, True)(image, mask)
    assert x.shape == (3, 48, 48) and y.shape == (48, 48)
    assert (y == 255).sum() == 48 * 48 - 20 * 30 and set(y.unique().tolist()) == {1, 255}
    x, y = train_transforms(16, None, False)(image, mask)  # the paper's "no augmentation": resize + centre crop
    assert x.shape == (3, 16, 16) and (y == 1).all()
    torch.manual_seed(0)
    scaled = RandomScale((2.0, 2.0))(image, mask)
    assert scaled[0].shape == (3, 40, 60) and set(scaled[1].unique().tolist()) == {1}
    # the encoder's interpolation for the image (bicubic: another image than bilinear), masks still nearest
    labels = tv_tensors.Mask(torch.randint(0, 3, (20, 30)))
    bicubic = RandomScale((1.5, 1.5), interpolation="bicubic")(image, labels)
    assert not torch.equal(bicubic[0], RandomScale((1.5, 1.5))(image, labels)[0])
    assert set(bicubic[1].unique().tolist()) == {0, 1, 2}
    x, y = train_transforms(16, None, False, interpolation="bicubic")(image, labels)
    assert x.shape == (3, 16, 16) and set(y.unique().tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="interpolation must be one of .*'bicubic'.*got 'cubic'"):
        train_transforms(16, interpolation="cubic")
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((0.0, 1.0))
    x, y = eval_transforms()(image, mask)
    expected = (image.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(x, expected)


def _pil_pair(seed=0, size=(37, 53)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    mask = rng.integers(0, 21, size, dtype=np.uint8)
    return image, mask, tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)), \
        tv_tensors.Mask(torch.from_numpy(mask).long())


def test_random_scale_crop_is_the_paper_codes_on_pil():
    # the paper's custom_transforms.py:88-122 re-stated on PIL with the drawn parameters: masks equal, images
    # within 1 grey level (bilinear + antialias vs PIL's BILINEAR); padding right/bottom, mask fill 0
    from PIL import ImageOps

    image, mask, timage, tmask = _pil_pair()
    transform = RandomScaleCrop(base_size=40, crop_size=41)
    padded = 0
    for seed in range(12):
        torch.manual_seed(seed)
        params = transform.make_params([timage, tmask])
        oh, ow = params["size"]
        assert 20 <= min(oh, ow) <= 80 and (oh, ow) == (min(oh, ow), int(53 * min(oh, ow) / 37))
        pil_image = Image.fromarray(image).resize((ow, oh), Image.BILINEAR)
        pil_mask = Image.fromarray(mask).resize((ow, oh), Image.NEAREST)
        _, _, pad_w, pad_h = params["padding"]
        if pad_w or pad_h:
            padded += 1
            pil_image = ImageOps.expand(pil_image, border=(0, 0, pad_w, pad_h), fill=0)
            pil_mask = ImageOps.expand(pil_mask, border=(0, 0, pad_w, pad_h), fill=0)
        box = (params["left"], params["top"], params["left"] + 41, params["top"] + 41)
        torch.manual_seed(seed)
        x, y = transform(timage, tmask)
        assert torch.equal(y, torch.from_numpy(np.array(pil_mask.crop(box))).long())
        assert (x.int() - torch.from_numpy(np.array(pil_image.crop(box))).permute(2, 0, 1).int()).abs().max() <= 1
    assert 0 < padded < 12  # both branches seen
    with pytest.raises(ValueError, match="scale_range"):
        RandomScaleCrop(scale_range=(2.0, 1.0))


def test_paper_train_transforms_pad_masks_with_background_and_use_torch_rng():
    import random

    image = tv_tensors.Image(torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(20, 30, dtype=torch.int64))
    # shorter side drawn in [int(0.5 * 48), int(0.5 * 48)] = 24 < 48: padded right and bottom
    transform = paper_train_transforms(48, scale_range=(0.5, 0.5), flip=False, blur=False)
    x, y = transform(image, mask)
    assert x.shape == (3, 48, 48) and set(y.unique().tolist()) == {0, 1}  # the code's fill=0: background
    black = (-torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])).view(3, 1, 1)
    torch.testing.assert_close(x[:, y == 0].mean(dim=1, keepdim=True).unsqueeze(-1), black, rtol=0, atol=1e-6)
    assert [type(t).__name__ for t in paper_train_transforms().transforms] == [
        "ToImage", "RandomHorizontalFlip", "RandomScaleCrop", "RandomGaussianBlur", "ToDtype", "Normalize"]
    outputs = []
    for python_seed in (1, 2):  # Python's random is not used; torch's seed decides every draw
        random.seed(python_seed)
        torch.manual_seed(0)
        outputs.append(paper_train_transforms(32)(image, mask))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    torch.manual_seed(1)
    assert not torch.equal(paper_train_transforms(32)(image, mask)[0], outputs[0][0])


def test_gaussian_blur_is_pils_bit_for_bit():
    from PIL import ImageFilter

    image, _, timage, tmask = _pil_pair(seed=1)
    for radius in (0.0, 0.05, 0.3, 0.5, 0.77, 0.999):
        expected = np.array(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=radius)))
        assert torch.equal(pil_gaussian_blur(timage, radius).permute(1, 2, 0), torch.from_numpy(expected)), radius
    blurred, untouched = RandomGaussianBlur(p=1.0)(timage, tmask)
    assert torch.equal(untouched, tmask) and not torch.equal(blurred, timage)
    assert torch.equal(RandomGaussianBlur(p=0.0)(timage, tmask)[0], timage)
    with pytest.raises(TypeError, match="uint8"):
        RandomGaussianBlur(p=1.0)(tv_tensors.Image(timage.float()), tmask)


def test_fix_scale_crop_is_the_paper_codes_validation_transform():
    _, mask, timage, tmask = _pil_pair(seed=2)  # 37 x 53: the shorter side (height) becomes 30
    x, y = FixScaleCrop(30)(timage, tmask)
    ow = int(1.0 * 53 * 30 / 37)
    left = round((ow - 30) / 2.0)
    expected = Image.fromarray(mask).resize((ow, 30), Image.NEAREST).crop((left, 0, left + 30, 30))
    assert x.shape == (3, 30, 30) and torch.equal(y, torch.from_numpy(np.array(expected)).long())
    x, y2 = paper_eval_transforms(30)(timage, tmask)
    assert x.dtype == torch.float32 and x.shape == (3, 30, 30) and torch.equal(y2, y)
    tall = tv_tensors.Image(torch.zeros(3, 40, 20, dtype=torch.uint8)), tv_tensors.Mask(torch.zeros(40, 20))
    assert FixScaleCrop(16)(*tall)[0].shape == (3, 16, 16)
    assert torch.equal(build_eval_transforms("paper", 30)(timage, tmask)[1], y)
    assert build_eval_transforms("full")(timage, tmask)[1].shape == (37, 53)
    assert type(build_train_transforms("none", 30).transforms[1]) is FixScaleCrop
    with pytest.raises(ValueError, match=r"protocol must be one of \('full', 'paper'\), got 'crop'"):
        build_eval_transforms("crop")
    with pytest.raises(ValueError, match=r"augmentation must be one of \('deeplab', 'paper', 'none'\)"):
        build_train_transforms("strong")


def _make_voc(root, train_ids, val_ids, size=(12, 16)):
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for i in train_ids + val_ids:
        Image.fromarray(np.full((*size, 3), 80, np.uint8)).save(base / "JPEGImages" / f"{i}.jpg")
        mask = Image.fromarray(np.full(size, 7, np.uint8), mode="L").convert("P")
        mask.save(base / "SegmentationClass" / f"{i}.png")
    (base / "ImageSets/Segmentation/train.txt").write_text("\n".join(train_ids) + "\n")
    (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(val_ids) + "\n")


def _make_sbd(root, train_ids, val_ids, size=(12, 16)):
    from scipy.io import savemat

    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    for i in train_ids + val_ids:
        Image.fromarray(np.full((*size, 3), 40, np.uint8)).save(root / "img" / f"{i}.jpg")
        savemat(root / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": np.full(size, 3, np.uint8)}})
    (root / "train.txt").write_text("\n".join(train_ids) + "\n")
    (root / "val.txt").write_text("\n".join(val_ids) + "\n")


def test_voc_segmentation_from_a_prepared_tree(tmp_path):
    _make_voc(tmp_path, ["a", "b"], ["c"])
    train, val = VOCSegmentation(tmp_path, "train"), VOCSegmentation(tmp_path, "val")
    assert len(train) == 2 and len(val) == 1 and len(VOC_CLASSES) == 21
    image, mask = train[0]
    assert image.shape == (3, 12, 16) and (mask == 7).all()
    with pytest.raises(FileNotFoundError, match="PASCAL VOC 2012 .*not found under .*download=True"):
        VOCSegmentation(tmp_path / "missing", "train")


def test_voc_aug_is_sbd_plus_voc_train_minus_voc_val(tmp_path):
    pytest.importorskip("scipy")
    _make_voc(tmp_path / "voc", train_ids=["v1", "both"], val_ids=["val1", "val2"])
    _make_sbd(tmp_path / "sbd", train_ids=["s1", "both", "val1"], val_ids=["s2", "val2"])
    ds = VOCAugSegmentation(tmp_path / "voc", tmp_path / "sbd")
    assert ds.ids == ["both", "s1", "s2", "v1"]
    masks = {i: ds[k][1] for k, i in enumerate(ds.ids)}
    assert (masks["both"] == 7).all()  # VOC's annotation wins where both have one
    assert (masks["s1"] == 3).all() and (masks["v1"] == 7).all()
    with pytest.raises(FileNotFoundError, match="SBD .*not found"):
        VOCAugSegmentation(tmp_path / "voc", tmp_path / "nowhere")


def test_context_scenes_share_the_layout_and_differ_in_where_the_orientation_is():
    for index in range(6):
        local_image, local_mask = render_context_scene(index, 224, seed=2, rule="local")
        global_image, global_mask = render_context_scene(index, 224, seed=2, rule="global")
        nocue_image, nocue_mask = render_context_scene(index, 224, seed=2, rule="global-nocue")
        assert torch.equal(global_mask, nocue_mask)
        objects = global_mask > 0
        assert torch.equal(local_mask > 0, objects) and objects.any()
        # the same background and marker; the objects striped in the local scenes only
        assert torch.equal(local_image[:, ~objects], global_image[:, ~objects])
        stripes = (local_image - global_image)[:, objects]  # colour x (stripe - its mean), the same noise
        assert stripes.abs().mean() > 0.05 and (stripes > 0).any() and (stripes < 0).any()
        # the shape is the same under both rules; in the global scenes one orientation (the marker's) for all
        assert torch.equal((local_mask[objects] - 1) // 2, (global_mask[objects] - 1) // 2)
        assert ((global_mask[objects] - 1) % 2).unique().numel() == 1
        marker = (global_image != nocue_image).any(dim=0)
        assert marker.sum() == 24 * 134  # the marker, and nothing else, is painted over
        marker_cols, object_cols = marker.any(dim=0).nonzero(), objects.any(dim=0).nonzero()
        # beyond the reach of a logit without context (121 px; tests/test_context_study.py measures it) + 16 px
        assert (object_cols[:, None] - marker_cols[None, :]).abs().min() >= 137
    assert torch.equal(render_context_scene(3, 224, 0)[1], render_context_scene(3, 224, 0)[1])
    with pytest.raises(ValueError, match="rule must be 'local', 'global' or 'global-nocue'"):
        render_context_scene(0, 224, rule="nearby")


def test_context_scene_layout_is_what_the_scene_draws():
    from mfnet_zoo.data.synthetic import context_scene_layout

    for index in range(8):
        layout = context_scene_layout(index, 224, seed=3)
        for rule in ("local", "global", "global-nocue"):
            assert torch.equal(render_context_scene(index, 224, seed=3, rule=rule)[1], layout.label_mask(rule))
        image, mask = render_context_scene(index, 224, seed=3, rule="global")
        blank, _ = render_context_scene(index, 224, seed=3, rule="global-nocue")
        marker = (image != blank).any(dim=0)
        x0, y0, width, height = layout.marker
        if not layout.marker_left:
            marker = marker.flip(-1)
        assert marker.nonzero().amin(0).tolist() == [y0, x0] and marker.nonzero().amax(0).tolist() == [
            y0 + height - 1, x0 + width - 1]
        marker_cols, object_cols = marker.any(dim=0).nonzero(), (layout.label_mask(mirrored=False) > 0).any(0).nonzero()
        assert layout.marker_gap() == (object_cols[:, None] - marker_cols[None, :]).abs().min()
    # it renders at any size the datasets allow (16 and up)
    for size in (16, 48, 224, 320):
        image, mask = render_context_scene(0, size, seed=0, rule="local")
        assert image.shape == (3, size, size) and mask.shape == (size, size)


def test_context_scene_labels_follow_their_rule():
    # local: an object's orientation class is its own stripes; global: every object takes the marker's
    labels_local, labels_global = set(), set()
    for index in range(40):
        labels_local |= set(render_context_scene(index, 224, rule="local")[1].unique().tolist())
        _, mask = render_context_scene(index, 224, rule="global")
        labels_global |= set(mask.unique().tolist())
    assert labels_local == labels_global == set(range(7))


@pytest.mark.parametrize("name, scenes, size", [("synthetic", "shapes", 64), ("synthetic-global", "global", 224),
                                                ("synthetic-global-nocue", "global-nocue", 224)])
def test_build_dataset_names_every_scene_family(name, scenes, size):
    train, classes = build_dataset(name, "train", synthetic_size=16)
    val, _ = build_dataset(name, "val", synthetic_size=16)
    assert train.scenes == val.scenes == scenes and train.size == size and len(val) == 16
    assert classes == list(CONTEXT_CLASSES if scenes != "shapes" else SYNTHETIC_CLASSES)
    image, mask = val[0]
    assert image.shape == (3, size, size) and int(mask.max()) < len(classes)
    with pytest.raises(ValueError, match="scenes must be one of"):
        SyntheticShapes(4, 64, scenes="far")
