// safetensors files (Hugging Face's format, read by PyTorch users everywhere): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the
// raw little-endian data. Weights move between medseg and PyTorch through these files.
//
//   safetensors::Writer w;  w.add("conv.weight", weight);  w.save("model.safetensors");
//   auto f = safetensors::File::read("model.safetensors");
//   auto weight = f.get<float>("conv.weight");                // checks dtype; copies out
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace medseg::safetensors {

/// The format's dtype code ("F32", "BF16", "U8", ...).
std::string dtype_code(DType t);
DType dtype_from_code(const std::string& code, const std::string& where);

struct TensorInfo {
  DType dtype;
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

/// A whole file read into memory.
class File {
 public:
  /// Reads and validates `path`: header length, JSON, dtypes, shapes and offsets within the file.
  static File read(const std::filesystem::path& path);

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// The tensor `name` as type T; throws when the stored dtype is not T.
  template <class T>
  Tensor<T, Cpu> get(const std::string& name) const;
  /// The tensor `name`, checked to have `shape` (the error names both shapes).
  template <class T>
  Tensor<T, Cpu> get(const std::string& name, const Shape& shape) const;

 private:
  std::string path_;
  std::vector<char> data_;  // the data section
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// Collects tensors and writes them in one file, atomically (temporary file, then rename).
class Writer {
 public:
  template <class T, class B>
  void add(const std::string& name, const Tensor<T, B>& t);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void save(const std::filesystem::path& path) const;

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    std::vector<char> bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline std::string dtype_code(DType t) {
  switch (t) {
    case DType::float32: return "F32";
    case DType::float64: return "F64";
    case DType::float16: return "F16";
    case DType::bfloat16: return "BF16";
    case DType::int8: return "I8";
    case DType::int16: return "I16";
    case DType::int32: return "I32";
    case DType::int64: return "I64";
    case DType::uint8: return "U8";
    case DType::uint16: return "U16";
    case DType::uint32: return "U32";
    case DType::uint64: return "U64";
  }
  return "?";
}

inline DType dtype_from_code(const std::string& code, const std::string& where) {
  for (int i = 0; i <= static_cast<int>(DType::uint64); ++i)
    if (dtype_code(static_cast<DType>(i)) == code) return static_cast<DType>(i);
  throw Error{{.where = where, .field = "dtype", .expected = "one of F32 F64 F16 BF16 I8 I16 I32 I64 U8 U16 U32 U64",
               .actual = "\"" + code + "\""}};
}

inline File File::read(const std::filesystem::path& path) {
  File f;
  f.path_ = path.string();
  const std::string where = "safetensors: " + f.path_;
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), [&] {
    return ErrorInfo{.where = where, .field = "file", .expected = "a readable file", .actual = "cannot open"};
  });
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  unsigned char len_bytes[8] = {};
  require(size >= 8 && in.read(reinterpret_cast<char*>(len_bytes), 8), [&] {
    return ErrorInfo{.where = where, .field = "header length", .expected = "8 bytes",
                     .actual = std::to_string(size) + " bytes in the file"};
  });
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  require(header_len <= size - 8, [&] {
    return ErrorInfo{.where = where, .field = "header length", .expected = "at most " + std::to_string(size - 8),
                     .actual = std::to_string(header_len)};
  });
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    throw Error{{.where = where, .field = "header", .expected = "JSON", .actual = "unparsable", .detail = e.what()}};
  }
  require(j.is_object(), [&] {
    return ErrorInfo{.where = where, .field = "header", .expected = "a JSON object", .actual = j.type_name()};
  });
  const std::uint64_t data_size = size - 8 - header_len;
  for (const auto& item : j.items()) {
    const std::string name = item.key();
    const nlohmann::json& v = item.value();
    if (name == "__metadata__") {
      for (const auto& [k, mv] : v.items()) f.metadata_[k] = mv.is_string() ? mv.get<std::string>() : mv.dump();
      continue;
    }
    const std::string entry = where + ": tensor \"" + name + "\"";
    require(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), [&] {
      return ErrorInfo{.where = entry, .field = "entry", .expected = "dtype, shape and data_offsets",
                       .actual = v.dump()};
    });
    TensorInfo info;
    info.dtype = dtype_from_code(v["dtype"].get<std::string>(), entry);
    for (const auto& d : v["shape"]) {
      require(d.is_number_integer() && d.get<std::int64_t>() >= 0, [&] {
        return ErrorInfo{.where = entry, .field = "shape", .expected = "non-negative integers", .actual = v["shape"].dump()};
      });
      info.shape.push_back(d.get<std::int64_t>());
    }
    info.begin = v["data_offsets"].at(0).get<std::uint64_t>();
    info.end = v["data_offsets"].at(1).get<std::uint64_t>();
    const std::uint64_t expected_bytes = static_cast<std::uint64_t>(info.shape.product()) * size_of(info.dtype);
    require(info.begin <= info.end && info.end <= data_size && info.end - info.begin == expected_bytes, [&] {
      return ErrorInfo{.where = entry, .field = "data_offsets",
                       .expected = std::to_string(expected_bytes) + " bytes within the " + std::to_string(data_size) +
                                   "-byte data section",
                       .actual = v["data_offsets"].dump()};
    });
    f.tensors_[name] = info;
  }
  f.data_.resize(data_size);
  in.read(f.data_.data(), static_cast<std::streamsize>(data_size));
  require(static_cast<std::uint64_t>(in.gcount()) == data_size, [&] {
    return ErrorInfo{.where = where, .field = "data", .expected = std::to_string(data_size) + " bytes",
                     .actual = std::to_string(in.gcount())};
  });
  return f;
}

inline std::vector<std::string> File::names() const {
  std::vector<std::string> n;
  for (const auto& [k, v] : tensors_) n.push_back(k);
  return n;
}

inline const TensorInfo& File::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  require(it != tensors_.end(), [&] {
    return ErrorInfo{.where = "safetensors: " + path_, .field = "tensor \"" + name + "\"",
                     .expected = "present in the file", .actual = "missing"};
  });
  return it->second;
}

template <class T>
Tensor<T, Cpu> File::get(const std::string& name) const {
  const TensorInfo& i = info(name);
  require(i.dtype == dtype_of<T>, [&] {
    return ErrorInfo{.where = "safetensors: " + path_, .field = "dtype of \"" + name + "\"",
                     .expected = std::string(medseg::name(dtype_of<T>)), .actual = std::string(medseg::name(i.dtype))};
  });
  auto t = Tensor<T, Cpu>::empty(i.shape);
  if (i.end > i.begin) std::memcpy(t.data(), data_.data() + i.begin, i.end - i.begin);
  return t;
}

template <class T>
Tensor<T, Cpu> File::get(const std::string& name, const Shape& shape) const {
  const TensorInfo& i = info(name);
  require(i.shape == shape, [&] {
    return ErrorInfo{.where = "safetensors: " + path_, .field = "shape of \"" + name + "\"",
                     .expected = shape.to_string(), .actual = i.shape.to_string()};
  });
  return get<T>(name);
}

template <class T, class B>
void Writer::add(const std::string& name, const Tensor<T, B>& t) {
  Entry e{dtype_of<T>, t.shape(), std::vector<char>(t.nbytes())};
  if (t.numel() > 0) Tensor<T, Cpu>::wrap(reinterpret_cast<T*>(e.bytes.data()), t.shape()).copy_from(t);
  entries_[name] = std::move(e);
}

inline void Writer::save(const std::filesystem::path& path) const {
  nlohmann::json header = nlohmann::json::object();
  std::uint64_t offset = 0;
  for (const auto& [name, e] : entries_) {
    header[name] = {{"dtype", dtype_code(e.dtype)},
                    {"shape", e.shape.to_vector()},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the format pads the header to 8 bytes
  const auto tmp = std::filesystem::path(path.string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    require(static_cast<bool>(out), [&] {
      return ErrorInfo{.where = "safetensors: " + path.string(), .field = "file", .expected = "writable",
                       .actual = "cannot create " + tmp.string()};
    });
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, e] : entries_) out.write(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
    require(static_cast<bool>(out.flush()), [&] {
      return ErrorInfo{.where = "safetensors: " + path.string(), .field = "file", .expected = "written",
                       .actual = "write failed (disk full?)"};
    });
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace medseg::safetensors
