//! The bytes of a safetensors file: the tests' writer of edited and hostile model files.

/// A file holding `tensors` (name, dtype as the header spells it, shape, data), their data in
/// that order, after a header with `metadata` (key and value, both JSON string bodies, escapes
/// included) if any, padded with spaces so that the data starts at a multiple of 8 bytes.
pub fn safetensors_bytes<S: AsRef<str>>(
    metadata: &[(S, S)],
    tensors: &[(S, S, Vec<usize>, Vec<u8>)],
) -> Vec<u8> {
    let mut entries: Vec<String> = Vec::new();
    if !metadata.is_empty() {
        let meta: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("\"{}\":\"{}\"", k.as_ref(), v.as_ref()))
            .collect();
        entries.push(format!("\"__metadata__\":{{{}}}", meta.join(",")));
    }
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        entries.push(format!(
            "\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            name.as_ref(),
            dtype.as_ref(),
            dims.join(","),
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(bytes);
    }
    let mut header = format!("{{{}}}", entries.join(","));
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    file
}
