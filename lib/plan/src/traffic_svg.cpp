// Layout, top to bottom: two title lines; the big matrix (sender rows, receiver columns)
// with rank labels, node boundaries, a bar of each sender's total on its right and the
// busiest sender's row outlined in red; a colour legend; then the per-layer matrices,
// wrapped 16 to a row. One linear colour scale per matrix kind: the big matrix against
// its largest cell, the small ones against the largest cell of any layer, so that layers
// compare with each other.
#include "eplb/plan/traffic_svg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "eplb/core/error.hpp"
#include "eplb/core/units.hpp"

namespace eplb::plan {
namespace {

constexpr const char* kMarker = "#d62728";  // the busiest sender
constexpr int kMargin = 24;
constexpr int kLabelWidth = 56;  // room for the row labels and the vertical axis title
constexpr int kLayersPerRow = 16;

// The bytes of `text` with every invalid UTF-8 sequence replaced by U+FFFD and the XML
// specials escaped.
std::string xml_text(const std::string& text) {
  std::string out;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (s[i + k] & 0xc0) == 0x80;
    if (ok && len == 1 && c < 0x20 && c != '\t') ok = false;  // control characters
    if (!ok) {
      out += "\xef\xbf\xbd";
      ++i;
      continue;
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.append(text, i, len);
    }
    i += len;
  }
  return out;
}

std::string human_bytes(int64_t bytes) { return core::format_bytes(static_cast<double>(bytes)); }

// White for nothing, then light to dark blue, linear in value / max.
std::string colour(int64_t value, int64_t max) {
  if (value <= 0 || max <= 0) return "#ffffff";
  const double t = 0.15 + 0.85 * static_cast<double>(value) / static_cast<double>(max);
  const auto mix = [t](int from, int to) { return static_cast<int>(from + (to - from) * t + 0.5); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(222, 8), mix(235, 48), mix(247, 107));
}

using Matrix = std::vector<std::vector<int64_t>>;

Matrix summed(const LayerTraffic& layers) {
  Matrix sum = layers.front();
  for (size_t l = 1; l < layers.size(); ++l) {
    for (size_t s = 0; s < sum.size(); ++s) {
      for (size_t d = 0; d < sum.size(); ++d) sum[s][d] += layers[l][s][d];
    }
  }
  return sum;
}

int64_t max_cell(const Matrix& m) {
  int64_t out = 0;
  for (const auto& row : m) out = std::max(out, *std::max_element(row.begin(), row.end()));
  return out;
}

// Cells of one matrix at (x, y), `cell` pixels each; tooltips when `rank_ids` (the EP rank
// at each position) is given.
void draw_cells(std::string& svg, const Matrix& m, int x, int y, double cell, int64_t max,
                const std::vector<int32_t>* rank_ids) {
  for (size_t s = 0; s < m.size(); ++s) {
    for (size_t d = 0; d < m.size(); ++d) {
      if (m[s][d] == 0) continue;
      svg += fmt::format(R"(<rect x="{:.2f}" y="{:.2f}" width="{:.2f}" height="{:.2f}" fill="{}">)",
                         x + cell * static_cast<double>(d), y + cell * static_cast<double>(s), cell,
                         cell, colour(m[s][d], max));
      if (rank_ids != nullptr) {
        svg += fmt::format("<title>rank {} -&gt; rank {}: {}</title>", (*rank_ids)[s],
                           (*rank_ids)[d], human_bytes(m[s][d]));
      }
      svg += "</rect>\n";
    }
  }
  svg += fmt::format(
      R"(<rect x="{}" y="{}" width="{:.2f}" height="{:.2f}" fill="none" stroke="#555" stroke-width="1"/>)"
      "\n",
      x, y, cell * static_cast<double>(m.size()), cell * static_cast<double>(m.size()));
}

// A node boundary before every position whose node differs from the previous one.
void draw_node_lines(std::string& svg, const std::vector<int32_t>& node_at, int x, int y,
                     double cell, double width) {
  const double side = cell * static_cast<double>(node_at.size());
  for (size_t r = 1; r < node_at.size(); ++r) {
    if (node_at[r] == node_at[r - 1]) continue;
    const double at = cell * static_cast<double>(r);
    svg += fmt::format(
        R"(<line x1="{:.2f}" y1="{}" x2="{:.2f}" y2="{:.2f}" stroke="#222" stroke-width="{:.1f}"/>)"
        "\n",
        x + at, y, x + at, y + side, width);
    svg += fmt::format(
        R"(<line x1="{}" y1="{:.2f}" x2="{:.2f}" y2="{:.2f}" stroke="#222" stroke-width="{:.1f}"/>)"
        "\n",
        x, y + at, x + side, y + at, width);
  }
}

// The display order: EP ranks grouped by node (stable, so rank order within a node).
std::vector<int32_t> display_order(const TrafficPicture& picture, size_t n) {
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (picture.node_of_rank.empty()) return order;
  EPLB_ASSERT(picture.node_of_rank.size() == n);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return picture.node_of_rank[static_cast<size_t>(a)] <
           picture.node_of_rank[static_cast<size_t>(b)];
  });
  return order;
}

Matrix permuted(const Matrix& m, const std::vector<int32_t>& order) {
  Matrix out(m.size(), std::vector<int64_t>(m.size()));
  for (size_t s = 0; s < m.size(); ++s) {
    for (size_t d = 0; d < m.size(); ++d) {
      out[s][d] = m[static_cast<size_t>(order[s])][static_cast<size_t>(order[d])];
    }
  }
  return out;
}

// Every k-th rank is labelled so that labels never overlap.
size_t label_step(double cell) { return cell >= 14 ? 1 : static_cast<size_t>(14 / cell) + 1; }

}  // namespace

LayerTraffic traffic_bytes(const Plan& plan, int64_t bytes_per_expert) {
  const auto n = static_cast<size_t>(std::max(plan.num_ep_ranks(), 0));
  LayerTraffic out(plan.layers.size(), Matrix(n, std::vector<int64_t>(n, 0)));
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    for (const Message& m : plan.layers[l].messages) {
      out[l][static_cast<size_t>(m.src_rank)][static_cast<size_t>(m.dst_rank)] +=
          static_cast<int64_t>(m.expert_ids.size()) * bytes_per_expert;
    }
  }
  return out;
}

namespace {

// What the picture shows, in display order: position p shows EP rank order[p].
struct Scene {
  size_t n = 0;
  std::vector<int32_t> order;
  bool grouped = false;          // ranks reordered to group them by node
  std::vector<int32_t> node_at;  // node of each position; empty when unknown
  Matrix total;                  // summed over layers
  int64_t max_total = 0;
  int64_t max_layer = 0;  // the largest cell of any layer
  std::vector<int64_t> sent;
  size_t busiest = 0;  // the position of the busiest sender, lowest EP rank on ties
};

Scene scene_of(const TrafficPicture& picture) {
  EPLB_ASSERT(!picture.layers.empty() && !picture.layers.front().empty());
  Scene sc;
  sc.n = picture.layers.front().size();
  for (const auto& layer : picture.layers) {
    EPLB_ASSERT(layer.size() == sc.n);
    for (const auto& row : layer) EPLB_ASSERT(row.size() == sc.n);
  }
  sc.order = display_order(picture, sc.n);
  sc.grouped = !std::is_sorted(sc.order.begin(), sc.order.end());
  for (int32_t rank : sc.order) {
    if (!picture.node_of_rank.empty()) {
      sc.node_at.push_back(picture.node_of_rank[static_cast<size_t>(rank)]);
    }
  }
  sc.total = permuted(summed(picture.layers), sc.order);
  sc.max_total = max_cell(sc.total);
  for (const auto& layer : picture.layers) sc.max_layer = std::max(sc.max_layer, max_cell(layer));
  sc.sent.resize(sc.n);
  for (size_t s = 0; s < sc.n; ++s)
    sc.sent[s] = std::accumulate(sc.total[s].begin(), sc.total[s].end(), int64_t{0});
  for (size_t s = 1; s < sc.n; ++s) {
    if (sc.sent[s] > sc.sent[sc.busiest] ||
        (sc.sent[s] == sc.sent[sc.busiest] && sc.order[s] < sc.order[sc.busiest])) {
      sc.busiest = s;
    }
  }
  return sc;
}

// Where everything goes, in pixels.
struct Geometry {
  double cell = 0;  // of the big matrix
  double side = 0;
  int mx = kMargin + kLabelWidth;  // matrix origin
  int my = 132;
  double bar_x = 0;
  double bar_width = 200;
  double legend_y = 0;
  double small = 0;  // side of a per-layer matrix
  double small_cell = 0;
  double strip_y = 0;
  double page_width = 0;
  double height = 0;
};

Geometry geometry_of(const TrafficPicture& picture, size_t n) {
  Geometry g;
  g.cell = std::clamp(560.0 / static_cast<double>(n), 4.0, 40.0);
  g.side = g.cell * static_cast<double>(n);
  g.bar_x = g.mx + g.side + 16;
  g.legend_y = g.my + g.side + 40;
  const size_t num_layers = picture.layers.size();
  g.small = std::clamp(96.0 / static_cast<double>(n), 1.0, 12.0) * static_cast<double>(n);
  g.small_cell = g.small / static_cast<double>(n);
  g.strip_y = g.legend_y + 64;
  const size_t per_row = std::min<size_t>(num_layers, kLayersPerRow);
  const size_t strip_rows = (num_layers + kLayersPerRow - 1) / kLayersPerRow;
  const double width = std::max(g.bar_x + g.bar_width + 230,
                                kMargin * 2 + static_cast<double>(per_row) * (g.small + 16));
  double text_width = 0;
  for (const std::string* t : {&picture.title, &picture.subtitle}) {
    text_width = std::max(text_width, 2.0 * kMargin + 7.0 * static_cast<double>(t->size()));
  }
  g.height = g.strip_y + 24 + static_cast<double>(strip_rows) * (g.small + 40) + kMargin;
  g.page_width = std::max(width, text_width);
  return g;
}

// The SVG header and the title lines.
void draw_titles(std::string& svg, const TrafficPicture& picture, const Scene& sc,
                 const Geometry& g) {
  svg += fmt::format(
      R"(<?xml version="1.0" encoding="UTF-8"?>)"
      "\n"
      R"(<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{:.0f}" height="{:.0f}" )"
      R"(viewBox="0 0 {:.0f} {:.0f}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">)"
      "\n"
      R"(<rect width="100%" height="100%" fill="#ffffff"/>)"
      "\n",
      g.page_width, g.height, g.page_width, g.height);
  const int64_t all_bytes = std::accumulate(sc.sent.begin(), sc.sent.end(), int64_t{0});
  const std::string lines[] = {
      xml_text(picture.title), xml_text(picture.subtitle),
      fmt::format("summed over {} layers: {} in all; largest cell {}{}", picture.layers.size(),
                  human_bytes(all_bytes), human_bytes(sc.max_total),
                  sc.grouped ? "; EP ranks grouped by node" : "")};
  svg += fmt::format(
      R"(<text x="{}" y="{}" font-size="16" font-weight="bold">Bytes moved between EP ranks</text>)"
      "\n",
      kMargin, kMargin + 4);
  for (size_t i = 0; i < std::size(lines); ++i) {
    svg += fmt::format(R"(<text x="{}" y="{}" fill="#444">{}</text>)"
                       "\n",
                       kMargin, kMargin + 24 + 17 * static_cast<int>(i), lines[i]);
  }
}

// The big matrix, its axes and node boundaries.
void draw_matrix(std::string& svg, const TrafficPicture& picture, const Scene& sc,
                 const Geometry& g) {
  const int mx = g.mx, my = g.my;
  const double cell = g.cell, side = g.side;
  svg += fmt::format(R"(<text x="{:.2f}" y="{}" text-anchor="middle">receiver (EP rank)</text>)"
                     "\n",
                     mx + side / 2, my - 22);
  svg += fmt::format(
      R"x(<text x="{}" y="{:.2f}" text-anchor="middle" transform="rotate(-90 {} {:.2f})">sender (EP rank)</text>)x"
      "\n",
      kMargin + 4, my + side / 2, kMargin + 4, my + side / 2);
  const size_t step = label_step(cell);
  for (size_t r = 0; r < sc.n; r += step) {
    const double at = cell * (static_cast<double>(r) + 0.5);
    svg += fmt::format(R"(<text x="{:.2f}" y="{}" text-anchor="middle" font-size="10">{}</text>)"
                       "\n",
                       mx + at, my - 6, sc.order[r]);
    svg += fmt::format(R"(<text x="{}" y="{:.2f}" text-anchor="end" font-size="10">{}</text>)"
                       "\n",
                       mx - 4, my + at + 3.5, sc.order[r]);
  }
  draw_cells(svg, sc.total, mx, my, cell, sc.max_total, &sc.order);
  draw_node_lines(svg, sc.node_at, mx, my, cell, 2.0);
  for (size_t from = 0; from < sc.node_at.size();) {
    size_t to = from;
    while (to < sc.node_at.size() && sc.node_at[to] == sc.node_at[from]) ++to;
    const auto node = static_cast<size_t>(sc.node_at[from]);
    const std::string name = node < picture.node_names.size()
                                 ? fmt::format(" ({})", xml_text(picture.node_names[node]))
                                 : std::string();
    svg += fmt::format(
        R"(<text x="{:.2f}" y="{:.2f}" text-anchor="middle" font-size="10" fill="#222">node {}{}</text>)"
        "\n",
        mx + cell * static_cast<double>(from + to) / 2, my + side + 14, node, name);
    from = to;
  }
}

// Each sender's total as a bar; the busiest sender's row outlined.
void draw_senders(std::string& svg, const Scene& sc, const Geometry& g) {
  const int64_t max_sent = sc.sent[sc.busiest];
  for (size_t s = 0; s < sc.n; ++s) {
    if (sc.sent[s] == 0) continue;
    const double w = g.bar_width * static_cast<double>(sc.sent[s]) / static_cast<double>(max_sent);
    svg += fmt::format(
        R"(<rect x="{:.2f}" y="{:.2f}" width="{:.2f}" height="{:.2f}" fill="{}"><title>rank {} sends {}</title></rect>)"
        "\n",
        g.bar_x, g.my + g.cell * static_cast<double>(s) + g.cell * 0.1, w, g.cell * 0.8,
        s == sc.busiest ? kMarker : "#7f9fbf", sc.order[s], human_bytes(sc.sent[s]));
  }
  svg += fmt::format(R"(<text x="{:.2f}" y="{}" font-size="11">sent, per sender</text>)"
                     "\n",
                     g.bar_x, g.my - 6);
  if (max_sent > 0) {
    const double row_y = g.my + g.cell * static_cast<double>(sc.busiest);
    svg += fmt::format(
        R"(<rect x="{}" y="{:.2f}" width="{:.2f}" height="{:.2f}" fill="none" stroke="{}" stroke-width="2.5"/>)"
        "\n",
        g.mx, row_y, g.side, g.cell, kMarker);
    svg += fmt::format(
        R"(<text x="{:.2f}" y="{:.2f}" fill="{}" font-weight="bold">busiest sender: rank {}, {}</text>)"
        "\n",
        g.bar_x + g.bar_width + 6, std::max<double>(row_y + g.cell / 2 + 4, g.my + 12), kMarker,
        sc.order[sc.busiest], human_bytes(max_sent));
  } else {
    svg += fmt::format(
        R"(<text x="{:.2f}" y="{}" fill="{}">busiest sender: none, nothing moves</text>)"
        "\n",
        g.bar_x, g.my + 12, kMarker);
  }
}

// The colour legend.
void draw_legend(std::string& svg, const Scene& sc, const Geometry& g) {
  const double legend_w = std::min(g.side, 280.0);
  for (int i = 0; i < 20; ++i) {
    svg += fmt::format(R"(<rect x="{:.2f}" y="{:.2f}" width="{:.2f}" height="12" fill="{}"/>)"
                       "\n",
                       g.mx + legend_w * i / 20.0, g.legend_y, legend_w / 20.0 + 0.5,
                       colour((i + 1) * 1000, 20000));
  }
  svg += fmt::format(
      R"(<text x="{}" y="{:.2f}" font-size="10">0</text>)"
      "\n"
      R"(<text x="{:.2f}" y="{:.2f}" font-size="10" text-anchor="end">{} per cell</text>)"
      "\n",
      g.mx, g.legend_y + 24, g.mx + legend_w, g.legend_y + 24, human_bytes(sc.max_total));
}

// Per-layer small multiples, on one scale for all layers.
void draw_layers(std::string& svg, const TrafficPicture& picture, const Scene& sc,
                 const Geometry& g) {
  svg += fmt::format(
      R"(<text x="{}" y="{:.2f}" font-weight="bold">per layer (one colour scale for all layers, largest cell {})</text>)"
      "\n",
      kMargin, g.strip_y, human_bytes(sc.max_layer));
  for (size_t l = 0; l < picture.layers.size(); ++l) {
    const int x =
        kMargin + static_cast<int>(static_cast<double>(l % kLayersPerRow) * (g.small + 16));
    const int y =
        static_cast<int>(g.strip_y + 12 + static_cast<double>(l / kLayersPerRow) * (g.small + 40));
    draw_cells(svg, permuted(picture.layers[l], sc.order), x, y, g.small_cell, sc.max_layer,
               nullptr);
    draw_node_lines(svg, sc.node_at, x, y, g.small_cell, 0.8);
    svg += fmt::format(
        R"(<text x="{:.2f}" y="{:.2f}" text-anchor="middle" font-size="10">layer {}</text>)"
        "\n",
        x + g.small / 2, y + g.small + 13, l);
  }
}

}  // namespace

std::string render_traffic_svg(const TrafficPicture& picture) {
  const Scene scene = scene_of(picture);
  const Geometry geometry = geometry_of(picture, scene.n);
  std::string svg;
  draw_titles(svg, picture, scene, geometry);
  draw_matrix(svg, picture, scene, geometry);
  draw_senders(svg, scene, geometry);
  draw_legend(svg, scene, geometry);
  draw_layers(svg, picture, scene, geometry);
  svg += "</svg>\n";
  return svg;
}

}  // namespace eplb::plan
