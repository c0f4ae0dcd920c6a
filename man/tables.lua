-- pandoc filter for the man pages: each table becomes a definition list,
-- one entry per row (the first cell, then "header: cell" for the others).
-- Tables of three or four columns do not fit an 80-column terminal: troff
-- squeezes them and warns, and the cells become hard to read.

local function inlines_of(blocks)
  local out = pandoc.List()
  for i, b in ipairs(blocks) do
    if i > 1 then out:insert(pandoc.Space()) end
    if b.content and (b.t == "Plain" or b.t == "Para") then
      out:extend(b.content)
    else
      out:insert(pandoc.Str(pandoc.utils.stringify(b)))
    end
  end
  return out
end

function Table(tbl)
  local simple = pandoc.utils.to_simple_table(tbl)
  local headers = simple.headers
  local items = pandoc.List()
  for _, row in ipairs(simple.rows) do
    local term = inlines_of(row[1])
    local defs = pandoc.List()
    for c = 2, #row do
      local cell = inlines_of(row[c])
      if #cell > 0 then
        local head = pandoc.utils.stringify(headers[c] or {})
        local para = pandoc.List()
        if head ~= "" then
          para:insert(pandoc.Strong({ pandoc.Str(head .. ":") }))
          para:insert(pandoc.Space())
        end
        para:extend(cell)
        defs:insert(pandoc.Para(para))
      end
    end
    items:insert({ term, { defs } })
  end
  return pandoc.DefinitionList(items)
end
