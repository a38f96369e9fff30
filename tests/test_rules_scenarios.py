"""Scenario tests for the rule layer, each written from a statement of the source documents.

Every scenario asserts the top-ranked entity and that its citation points at the document and
section that states it.  The quoted source sentence (original language) is in the comment.
"""

from __future__ import annotations

from typing import Any

import pytest

from calcdx.findings import Finding, Margin, Morphology
from calcdx.rules import ClinicalContext, explain
from calcdx.taxonomy import LocationClass, Pattern

D003 = "003_4d307f20d16940dc"
D000 = "000_ae13d1fc27ebdf36"
D001 = "001_bb1b62943fb8eeb3"

HADD_SEC = "Tendon calcificaties > Calcific tendinopathie (HADD)"
NONHADD_SEC = "Tendon calcificaties > Non-HADD peesmineralisatie"
CPPD_SEC = "Articulaire calcificaties > CPPD kristalafzettingsziekte"
PERIART_SEC = "Articulaire calcificaties > Andere articulaire of peri-articulaire calcificaties"
RDA_SEC = (
    "Articulaire calcificaties > Specifiek geval van articulaire verkalkingen gecombineerd met gewrichtsdestructie"
)
SPINE_SEC = "Articulaire calcificaties > Specifiek geval van kristalafzettingsziekte in de wervelkolom"
GOUT_SEC = "Differentiële diagnose van articulaire calcificaties > Gout"
SOC_SEC = "Differentiële diagnose van articulaire calcificaties > Synoviale osteochondromatose"
ITC_SEC = "Intramusculaire en subcutane calcificaties > Idiopathische tumorale calcinose"
OTHER_SEC = "Intramusculaire en subcutane calcificaties > Andere vorm van calcinose (niet-idiopathisch)"
VASC_SEC = "Vasculaire verkalkingen en laesies"
INF_SEC = "Infecties"
TUM_SEC = "Tumoren van zacht weefsel"
HO_SEC = "Differentiële diagnose van intramusculaire en subcutane verkalkingen"

P, L, M = Pattern, LocationClass, Morphology


def f(
    pattern: Pattern,
    location: LocationClass = L.UNKNOWN,
    *morph: Morphology,
    site: str | None = None,
    body: str | None = None,
    size: float = 0.0,
    count: int = 1,
    margin: Margin = Margin.UNKNOWN,
    distribution: str | None = None,
) -> Finding:
    return Finding(
        pattern=pattern,
        probability=0.9,
        location_class=location,
        morphology=tuple(morph),
        site=site,
        body_part=body,
        long_axis_mm=size,
        count=count,
        margin=margin,
        distribution=distribution,
    )


# (id, finding, context, age, sex, expected top entity, document, section)
SCENARIOS: list[tuple[str, Finding, dict[str, Any], float | None, str | None, str, str, str]] = [
    # "De formatieve en rustende fasen gaan gepaard met een dichte, homogene en goed gedefinieerde calciumafzetting"
    (
        "hadd_dense_oval_supraspinatus",
        f(P.HADD, L.TENDON, M.OVAL, site="supraspinatus tendon", body="shoulder", size=8, margin=Margin.WELL_DEFINED),
        {},
        45,
        "F",
        "hadd_calcific_tendinopathy",
        D003,
        HADD_SEC,
    ),
    # "de calcificatie wordt pluizig, slecht gedefinieerd (met inbegrip van een komeetstaart uiterlijk)"
    (
        "hadd_resorptive_comet",
        f(P.HADD, L.TENDON, M.FLUFFY, M.COMET_TAIL, body="shoulder"),
        {},
        50,
        "M",
        "hadd_calcific_tendinopathy",
        D003,
        HADD_SEC,
    ),
    # "gevolgd door de pols, de heup en de elleboog"
    (
        "hadd_wrist_fcu",
        f(P.HADD, L.TENDON, M.OVAL, site="flexor carpi ulnaris", body="wrist"),
        {},
        52,
        None,
        "hadd_calcific_tendinopathy",
        D003,
        HADD_SEC,
    ),
    (
        "hadd_hip_gluteal",
        f(P.HADD, L.TENDON, M.OVAL, site="gluteus medius tendon", body="pelvis"),
        {},
        48,
        None,
        "hadd_calcific_tendinopathy",
        D003,
        HADD_SEC,
    ),
    (
        "hadd_unknown_age",
        f(P.HADD, L.TENDON, body="shoulder"),
        {},
        None,
        None,
        "hadd_calcific_tendinopathy",
        D003,
        HADD_SEC,
    ),
    # "degeneratieve enthesopathie die gezien wordt bij de aanhechting van de pees aan het bot"
    (
        "enthesophyte_old",
        f(P.HADD, L.TENDON, M.CONTINUOUS_WITH_BONE, body="knee"),
        {},
        75,
        None,
        "degenerative_enthesopathy",
        D003,
        NONHADD_SEC,
    ),
    # "Ossificatie van entheses is ook een kenmerk van seronegatieve artritiden ... (DISH)"
    (
        "enthesis_psoriatic",
        f(P.HADD, L.TENDON, M.CONTINUOUS_WITH_BONE),
        {"spondyloarthritis": True},
        45,
        None,
        "enthesis_ossification_spa_dish",
        D003,
        NONHADD_SEC,
    ),
    # "intratendineuze ossificaties optreden na verwonding of chirurgie"
    (
        "intratendinous_after_surgery",
        f(P.MYOSITIS_OSSIFICANS, L.TENDON, M.ZONAL_PERIPHERAL, site="achilles"),
        {"trauma_or_surgery": True},
        40,
        None,
        "post_traumatic_intratendinous_ossification",
        D003,
        NONHADD_SEC,
    ),
    # "CPPD kristalafzetting kan voorkomen in pezen en ziet er lineair en delicaat uit"
    (
        "cppd_tendon_linear",
        f(P.CPPD, L.TENDON, M.LINEAR, site="gastrocnemius"),
        {"chondrocalcinosis_elsewhere": True},
        78,
        None,
        "cppd_tendon",
        D003,
        NONHADD_SEC,
    ),
    # "In hyalien kraakbeen loopt het parallel met het subchondrale bot"
    (
        "cppd_knee_hyaline_old",
        f(P.CPPD, L.INTRA_ARTICULAR, M.LINEAR, body="knee"),
        {},
        82,
        "F",
        "cppd_chondrocalcinosis",
        D003,
        CPPD_SEC,
    ),
    # "vezelkraakbeen (menisci, acetabulair labrum, schaambeen symfyse ...)"
    (
        "cppd_meniscus",
        f(P.CPPD, L.INTRA_ARTICULAR, M.TRIANGULAR, site="meniscus", body="knee"),
        {},
        70,
        None,
        "cppd_chondrocalcinosis",
        D003,
        CPPD_SEC,
    ),
    (
        "cppd_tfcc_wrist",
        f(P.CPPD, L.INTRA_ARTICULAR, M.TRIANGULAR, site="TFCC", body="wrist"),
        {},
        74,
        None,
        "cppd_chondrocalcinosis",
        D003,
        CPPD_SEC,
    ),
    (
        "cppd_symphysis",
        f(P.CPPD, L.INTRA_ARTICULAR, M.LINEAR, site="symphysis", body="pelvis"),
        {},
        80,
        None,
        "cppd_chondrocalcinosis",
        D003,
        CPPD_SEC,
    ),
    (
        "cppd_no_age",
        f(P.CPPD, L.INTRA_ARTICULAR, M.LINEAR, body="knee"),
        {},
        None,
        None,
        "cppd_chondrocalcinosis",
        D003,
        CPPD_SEC,
    ),
    # "HADD kan ook worden aangetroffen in peri-articulaire weefsels zoals kapsel en ligamenten"
    (
        "periarticular_hadd_capsule",
        f(P.HADD, L.PERIARTICULAR, M.OVAL, body="wrist"),
        {"recent_injection": False},
        50,
        None,
        "periarticular_hadd",
        D003,
        PERIART_SEC,
    ),
    # "De differentiële diagnose ... omvat recente corticoïde injectie"
    (
        "post_injection",
        f(P.HADD, L.PERIARTICULAR, body="wrist"),
        {"recent_injection": True},
        50,
        None,
        "post_steroid_injection",
        D003,
        PERIART_SEC,
    ),
    (
        "post_injection_tumoral_like",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, body="shoulder"),
        {"recent_injection": True, "renal_failure": False},
        60,
        None,
        "post_steroid_injection",
        D003,
        PERIART_SEC,
    ),
    # "snelle progressie van gewrichtsvernietiging met duidelijke botresorptie"
    (
        "milwaukee_shoulder",
        f(P.HADD, L.PERIARTICULAR, body="shoulder"),
        {"joint_destruction": True, "fever_or_inflammation": False, "neurological_disorder": False},
        80,
        "F",
        "rapidly_destructive_arthropathy",
        D003,
        RDA_SEC,
    ),
    # "Afwezigheid van koorts ... helpt septische artritis uit te sluiten"
    (
        "destruction_with_fever",
        f(P.CPPD, L.INTRA_ARTICULAR, body="knee"),
        {"joint_destruction": True, "fever_or_inflammation": True},
        70,
        None,
        "septic_arthritis",
        D003,
        RDA_SEC,
    ),
    # "Een neuropathisch gewricht komt meestal voor bij een patiënt met een bekende
    #  onderliggende neurologische aandoening"
    (
        "destruction_neuropathy",
        f(P.CPPD, L.INTRA_ARTICULAR, body="knee"),
        {"joint_destruction": True, "neurological_disorder": True},
        60,
        None,
        "neuropathic_arthropathy",
        D003,
        RDA_SEC,
    ),
    # "crowned dens syndroom, typisch geassocieerd met CPPD kristalafzetting"
    ("crowned_dens", f(P.CPPD, L.PERIARTICULAR, body="cspine"), {}, 78, None, "crowned_dens", D003, SPINE_SEC),
    # "Calcific tendinitis van de longus colli valt binnen het spectrum van HADD"
    ("longus_colli", f(P.HADD, L.TENDON, body="neck"), {}, 45, None, "longus_colli_tendinitis", D003, SPINE_SEC),
    # "Intradiscale CPPD-afzetting lijkt op syndesmofyten"
    (
        "disc_cppd",
        f(P.CPPD, L.INTRA_ARTICULAR, M.LINEAR, body="lspine"),
        {},
        70,
        None,
        "disc_facet_crystal_deposition",
        D003,
        SPINE_SEC,
    ),
    # "het is ongebruikelijk om ze in periarticulaire tophi te zien als er geen nierziekte naast bestaat"
    (
        "gout_tophus_renal",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, body="foot"),
        {"known_gout": True, "bone_erosion": True, "renal_failure": False},
        60,
        "M",
        "gout_tophus",
        D003,
        GOUT_SEC,
    ),
    # "typisch ring- en boogvormig chondroïd mineralisatiepatroon"
    (
        "synovial_osteochondromatosis",
        f(P.CPPD, L.INTRA_ARTICULAR, M.RING_AND_ARC, body="hip", count=8),
        {},
        45,
        None,
        "synovial_osteochondromatosis",
        D003,
        SOC_SEC,
    ),
    (
        "osteochondromatosis_as_phlebolith",
        f(P.PHLEBOLITH, L.INTRA_ARTICULAR, M.RING_AND_ARC, count=5),
        {},
        40,
        None,
        "synovial_osteochondromatosis",
        D003,
        SOC_SEC,
    ),
    # "multiloculaire dicht verkalkte periarticulaire massa's ... in de eerste en tweede decennia"
    (
        "itc_teenager_normal_labs",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.MULTILOCULATED, body="hip"),
        {"serum_phosphate": "normal", "serum_calcium": "normal", "renal_failure": False},
        15,
        "M",
        "idiopathic_tumoral_calcinosis",
        D003,
        ITC_SEC,
    ),
    # "Het komt vaker voor bij patiënten van Afrikaanse afkomst"
    (
        "itc_african_child",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.MULTILOCULATED, body="shoulder"),
        {"african_ancestry": True},
        12,
        None,
        "idiopathic_tumoral_calcinosis",
        D003,
        ITC_SEC,
    ),
    # "één met verhoogde fosfaatspiegel in het serum (meestal familiair)"
    (
        "itc_familial_raised_phosphate",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.MULTILOCULATED, body="hip"),
        {"serum_phosphate": "raised", "renal_failure": False},
        14,
        None,
        "idiopathic_tumoral_calcinosis",
        D003,
        ITC_SEC,
    ),
    # "metabole (of metastatische) calcificaties van chronisch nierfalen met hemodialyse"
    (
        "metabolic_dialysis_raised_phosphate",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.MULTILOCULATED, body="hip"),
        {"renal_failure": True, "serum_phosphate": "raised"},
        55,
        "F",
        "metabolic_calcinosis_renal",
        D003,
        OTHER_SEC,
    ),
    # "behalve de bot-erosie en -destructie die in dit geval gezien kunnen worden"
    (
        "metabolic_with_erosion",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.MULTILOCULATED),
        {"renal_failure": True, "bone_erosion": True},
        45,
        None,
        "metabolic_calcinosis_renal",
        D003,
        OTHER_SEC,
    ),
    (
        "metabolic_dialysis_young",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.MULTILOCULATED),
        {"renal_failure": True},
        19,
        None,
        "metabolic_calcinosis_renal",
        D003,
        OTHER_SEC,
    ),
    # "Andere oorzaken ... zijn primaire hyperparathyroïdie, sarcoïdose, het melk-alkalisyndroom en hypervitaminose D"
    (
        "hyperparathyroidism",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR),
        {"pth": "raised", "serum_calcium": "raised", "renal_failure": False},
        60,
        None,
        "metabolic_calcinosis_other",
        D003,
        OTHER_SEC,
    ),
    (
        "hypervitaminosis_d",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR),
        {"vitamin_d": "raised", "serum_calcium": "raised", "renal_failure": False},
        50,
        None,
        "metabolic_calcinosis_other",
        D003,
        OTHER_SEC,
    ),
    (
        "sarcoidosis_calcinosis",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR),
        {"granulomatous_disease": True, "serum_calcium": "raised", "renal_failure": False},
        45,
        None,
        "metabolic_calcinosis_other",
        D003,
        OTHER_SEC,
    ),
    # "De associatie van acro-osteolyse en huidatrofie met calcinose is het meest specifiek voor systemische sclerose"
    (
        "ssc_acroosteolysis_hand",
        f(P.TUMORAL_CALCINOSIS, L.SUBCUTANEOUS, body="hand"),
        {"acro_osteolysis": True, "skin_atrophy": True},
        55,
        "F",
        "calcinosis_circumscripta_ssc",
        D003,
        OTHER_SEC,
    ),
    (
        "ssc_known_fingers",
        f(P.CALCINOSIS_UNIVERSALIS, L.SUBCUTANEOUS, M.NODULAR, body="hand"),
        {"systemic_sclerosis": True, "acro_osteolysis": True},
        60,
        "F",
        "calcinosis_circumscripta_ssc",
        D003,
        OTHER_SEC,
    ),
    # "Calcinosis universalis is een diffuse calciumdepositie in spieren, fasciale vlakken en subcutane weefsels"
    (
        "cu_dermatomyositis_child",
        f(P.CALCINOSIS_UNIVERSALIS, L.INTRAMUSCULAR, M.SHEET, body="thigh", distribution="diffuse"),
        {"dermatomyositis": True},
        9,
        "F",
        "calcinosis_universalis_dm",
        D003,
        OTHER_SEC,
    ),
    (
        "cu_sheets_no_context",
        f(P.CALCINOSIS_UNIVERSALIS, L.INTRAMUSCULAR, M.SHEET, body="thigh"),
        {},
        40,
        None,
        "calcinosis_universalis_dm",
        D003,
        OTHER_SEC,
    ),
    (
        "cu_polymyositis_adult",
        f(P.CALCINOSIS_UNIVERSALIS, L.SUBCUTANEOUS, M.SHEET, M.NODULAR, body="thigh"),
        {"dermatomyositis": True},
        50,
        None,
        "calcinosis_universalis_dm",
        D003,
        OTHER_SEC,
    ),
    # "Gemengde bindweefselziekten en, niet vaak, lupus erythematosus kunnen ook calcinose vertonen"
    (
        "mctd",
        f(P.CALCINOSIS_UNIVERSALIS, L.SUBCUTANEOUS, body="thigh"),
        {"mctd_or_sle": True, "dermatomyositis": False},
        40,
        "F",
        "mctd_sle_calcinosis",
        D003,
        OTHER_SEC,
    ),
    # "Bij atherosclerose zullen dystrofische calcificaties de intima betreffen ... onregelmatig uitzicht"
    (
        "intimal_atherosclerosis",
        f(P.PHLEBOLITH, L.VASCULAR, M.IRREGULAR_INTIMAL, body="thigh"),
        {},
        70,
        None,
        "atherosclerotic_intimal_calcification",
        D003,
        VASC_SEC,
    ),
    # "Metabole calcificaties ... dun en delicaat en bevinden zich in de media"
    (
        "medial_tram_track_renal",
        f(P.PHLEBOLITH, L.VASCULAR, M.TRAM_TRACK, body="leg"),
        {"renal_failure": True},
        60,
        None,
        "medial_arterial_calcification",
        D003,
        VASC_SEC,
    ),
    # "flebolieten, met een focale goed afgelijnde verkalking met een dichtere rand en een centrale lucency"
    (
        "pelvic_phlebolith",
        f(P.PHLEBOLITH, L.VASCULAR, M.ROUND_RIM_LUCENT_CENTRE, body="pelvis", size=4),
        {},
        60,
        None,
        "phlebolith_venous_thrombosis",
        D003,
        VASC_SEC,
    ),
    (
        "phlebolith_leg",
        f(P.PHLEBOLITH, L.VASCULAR, M.ROUND_RIM_LUCENT_CENTRE, body="leg"),
        {},
        50,
        None,
        "phlebolith_venous_thrombosis",
        D003,
        VASC_SEC,
    ),
    # "Een veneuze malformatie vertoont een weke delenmassa met af en toe flebolieten"
    (
        "venous_malformation_arm",
        f(P.PHLEBOLITH, L.VASCULAR, M.ROUND_RIM_LUCENT_CENTRE, body="elbow", count=4),
        {"soft_tissue_mass": True},
        25,
        None,
        "venous_malformation",
        D003,
        VASC_SEC,
    ),
    (
        "venous_malformation_known",
        f(P.PHLEBOLITH, L.VASCULAR, body="hand"),
        {"venous_malformation": True},
        30,
        None,
        "venous_malformation",
        D003,
        VASC_SEC,
    ),
    # "kleine sigaarvormige intramusculaire en subcutane verkalkingen bij cysticercose"
    (
        "cysticercosis_cigars",
        f(P.CALCINOSIS_UNIVERSALIS, L.INTRAMUSCULAR, M.CIGAR, body="thigh", count=15),
        {},
        35,
        None,
        "cysticercosis",
        D003,
        INF_SEC,
    ),
    (
        "cysticercosis_as_phleboliths",
        f(P.PHLEBOLITH, L.INTRAMUSCULAR, M.CIGAR, body="pelvis", count=10),
        {},
        35,
        None,
        "cysticercosis",
        D003,
        INF_SEC,
    ),
    # "psoasverkalkingen ... spinale tuberculose"
    (
        "tb_dystrophic",
        f(P.CALCINOSIS_UNIVERSALIS, L.INTRAMUSCULAR, site="psoas"),
        {"granulomatous_disease": True, "fever_or_inflammation": True, "dermatomyositis": False},
        40,
        None,
        "chronic_infection_dystrophic",
        D003,
        INF_SEC,
    ),
    # "De meeste (82%) betreffen de handen en voeten"
    (
        "chondroma_hand",
        f(P.TUMORAL_CALCINOSIS, L.SUBCUTANEOUS, M.RING_AND_ARC, body="hand"),
        {"soft_tissue_mass": True, "systemic_sclerosis": False, "acro_osteolysis": False},
        40,
        None,
        "extraosseous_chondroma",
        D003,
        TUM_SEC,
    ),
    # "de calcificatie en/of ossificatie bij sarcoom meer centraal zal zijn in tegenstelling tot perifeer bij HO"
    (
        "central_mineralisation_sarcoma",
        f(P.MYOSITIS_OSSIFICANS, L.INTRAMUSCULAR, M.CENTRAL_MINERALISATION, body="thigh"),
        {"soft_tissue_mass": True},
        45,
        None,
        "extraosseous_osteosarcoma_chondrosarcoma",
        D003,
        TUM_SEC,
    ),
    # "periarticulaire massa van de onderste extremiteit met vage verkalkingen" in a young adult
    (
        "synovial_sarcoma_young",
        f(P.TUMORAL_CALCINOSIS, L.PERIARTICULAR, M.FAINT_FLECKS, body="knee"),
        {"soft_tissue_mass": True, "renal_failure": False, "recent_injection": False},
        25,
        None,
        "synovial_sarcoma",
        D003,
        TUM_SEC,
    ),
    # "metastase (fig. 26) kunnen ook verkalkingen vertonen"
    (
        "calcified_metastasis",
        f(P.TUMORAL_CALCINOSIS, L.INTRAMUSCULAR),
        {"known_malignancy": True, "dermatomyositis": False},
        65,
        None,
        "calcified_metastasis",
        D003,
        TUM_SEC,
    ),
    # "tumornecrose, na chemotherapie of bestraling, dystrofische verkalkingen"
    (
        "treated_tumour",
        f(P.TUMORAL_CALCINOSIS, L.INTRAMUSCULAR),
        {"prior_tumour_treatment": True},
        55,
        None,
        "treated_tumour_necrosis",
        D003,
        TUM_SEC,
    ),
    # "Injectieplaats vetnecrose en granulomen ... het vaakst in de gluteus maximus"
    (
        "gluteal_granuloma",
        f(P.CALCINOSIS_UNIVERSALIS, L.SUBCUTANEOUS, M.NODULAR, body="pelvis"),
        {"recent_injection": True, "dermatomyositis": False},
        50,
        None,
        "injection_granuloma",
        D003,
        TUM_SEC,
    ),
    # "Vervolgonderzoek ... vage calcificaties die uiteindelijk zullen evolueren naar een focale ossificatie"
    (
        "mo_mature_after_trauma",
        f(P.MYOSITIS_OSSIFICANS, L.INTRAMUSCULAR, M.ZONAL_PERIPHERAL, M.CLEFT_FROM_BONE, body="thigh", size=45),
        {"trauma_or_surgery": True},
        25,
        "M",
        "myositis_ossificans_circumscripta",
        D003,
        HO_SEC,
    ),
    (
        "mo_early_flecks",
        f(P.MYOSITIS_OSSIFICANS, L.INTRAMUSCULAR, M.FAINT_FLECKS, body="thigh"),
        {"trauma_or_surgery": True},
        20,
        None,
        "myositis_ossificans_circumscripta",
        D003,
        HO_SEC,
    ),
    (
        "mo_peripheral_beats_sarcoma",
        f(P.MYOSITIS_OSSIFICANS, L.INTRAMUSCULAR, M.ZONAL_PERIPHERAL, body="thigh"),
        {"soft_tissue_mass": True},
        30,
        None,
        "myositis_ossificans_circumscripta",
        D003,
        HO_SEC,
    ),
    # "Brandwonden zijn een klassieke oorzaak van heterotope ossificatie"
    (
        "ho_burns",
        f(P.MYOSITIS_OSSIFICANS, L.PERIARTICULAR, body="elbow"),
        {"burns": True},
        40,
        None,
        "ho_burns",
        D003,
        HO_SEC,
    ),
    # "Bij chronische veneuze insufficiëntie ... honingraatachtig uiterlijk ... in de onderhuidse weefsels"
    (
        "ho_venous_insufficiency",
        f(P.MYOSITIS_OSSIFICANS, L.SUBCUTANEOUS, body="leg"),
        {"venous_insufficiency": True},
        70,
        None,
        "ho_venous_insufficiency",
        D003,
        HO_SEC,
    ),
    # "progressieve ossale heteroplasie en progressieve fibrodysplasia ossificans"
    (
        "fop_child",
        f(P.MYOSITIS_OSSIFICANS, L.INTRAMUSCULAR, body="shoulder"),
        {"hereditary_ossification": True},
        8,
        None,
        "hereditary_ho_fop_poh",
        D003,
        HO_SEC,
    ),
    # seed 000: "Iatrogene calcinosis cutis: na infusen met calciumoplossingen"
    (
        "iatrogenic_iv_calcium",
        f(P.CALCINOSIS_UNIVERSALIS, L.SUBCUTANEOUS, body="hand"),
        {"iv_calcium": True},
        70,
        None,
        "iatrogenic_calcinosis_cutis",
        D000,
        "4. Iatrogene calcinosis cutis",
    ),
    # seed 000: "Calciphylaxis is een extreme kalkafzetting in de kleine bloedvaten"
    (
        "calciphylaxis",
        f(P.CALCINOSIS_UNIVERSALIS, L.VASCULAR, body="thigh"),
        {"renal_failure": True, "pth": "raised", "skin_ulceration": True, "dermatomyositis": False},
        60,
        None,
        "calciphylaxis",
        D000,
        "5. Calciphylaxis",
    ),
    # seed 001: "Traumatic calcinosis cutis ... calcification of the skin resulting from the deposition"
    (
        "traumatic_calcinosis_cutis",
        f(P.CALCINOSIS_UNIVERSALIS, L.SUBCUTANEOUS, M.NODULAR, body="knee"),
        {"trauma_or_surgery": True, "dermatomyositis": False, "serum_phosphate": "normal"},
        35,
        None,
        "traumatic_calcinosis_cutis",
        D001,
        "Diagnosis > Classification",
    ),
]


@pytest.mark.parametrize(
    ("name", "finding", "context", "age", "sex", "top", "document", "section"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_scenario_top_entity_and_citation(
    name: str,
    finding: Finding,
    context: dict[str, Any],
    age: float | None,
    sex: str | None,
    top: str,
    document: str,
    section: str,
) -> None:
    diff = explain([finding], ClinicalContext(**context), patient_age_years=age, patient_sex=sex)
    ranking = [e.entity_id for e in diff.entries]
    assert diff.top is not None
    assert diff.top.entity_id == top, f"{name}: ranking {ranking[:4]}"
    assert diff.top.citation["document"] == document
    assert diff.top.citation["section"].startswith(section)
    assert diff.top.workup, "every top entity advises a work-up"
    assert all(w["cite"]["document"] for w in diff.top.workup)


def test_at_least_sixty_scenarios() -> None:
    assert len(SCENARIOS) >= 60
