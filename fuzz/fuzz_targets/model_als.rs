//! Any bytes as `model.als`: a validated model or an error saying what is wrong, never a panic
//! or an allocation the file's size does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    submit::exec::memory::set_limit(1 << 30, "1G");
    if let Ok(submit::artifact::SavedModel::Als(model)) = submit::artifact::parse_model("als", data)
    {
        for user in 0..model.user_ids.len() {
            let _ = model.seen(user);
        }
        let _ = model.item_counts();
    }
});
