//! Any bytes as `model.trees.json`: a validated ensemble or an error saying what is wrong,
//! never a panic; and a model that passes validation scores a row without looping or panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    submit::exec::memory::set_limit(1 << 30, "1G");
    if let Ok(submit::artifact::SavedModel::Trees(trees)) =
        submit::artifact::parse_model("gbt", data)
    {
        let width = trees.feature_names.len();
        let _ = trees.model.predict_row(|feature| if feature < width { 0.5 } else { f32::NAN });
        let _ = trees.model.predict_row(|_| f32::NAN);
    }
});
