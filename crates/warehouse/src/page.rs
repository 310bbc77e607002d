//! A page of one table's objects, as Stripe lists them: newest first (`created`, then `id`),
//! `limit` at a time after a `starting_after` cursor, filtered by typed columns and a `created`
//! range. Both backends run the SQL built here; only their placeholders differ.

use crate::schema::{ColumnType, table};
use crate::{Result, StoreError};

/// What a page asks for.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Equality filters on the table's typed columns (`customer`, `status`…), as text; each is
    /// read as its column's type.
    pub filters: Vec<(String, String)>,
    /// `created >= `.
    pub created_gte: Option<i64>,
    /// `created < `.
    pub created_lt: Option<i64>,
    /// The id of the last object of the previous page.
    pub starting_after: Option<String>,
    /// The id of the first object of the next page (the page just newer than it, still
    /// answered newest first). Wins over `starting_after`.
    pub ending_before: Option<String>,
    /// Leave out rows whose typed column equals this (`status` ≠ `canceled`: Stripe's
    /// default for subscriptions).
    pub exclude: Option<(String, String)>,
    /// Objects per page (1–100).
    pub limit: usize,
    /// Deleted objects too (Stripe's lists leave them out).
    pub include_deleted: bool,
}

/// A typed parameter of the page's SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Real(f64),
}

/// The cursor id of a query and whether it pages toward newer objects.
pub fn cursor_id(query: &PageQuery) -> Option<(&str, bool)> {
    match (&query.ending_before, &query.starting_after) {
        (Some(id), _) => Some((id, true)),
        (None, Some(id)) => Some((id, false)),
        (None, None) => None,
    }
}

/// The SQL of a page (placeholders written by `placeholder(n)`, 1-based) and its parameters
/// after the connection's two (`account_id`, `livemode`). `from` is the table as the backend
/// names it in SQL; the cursor is given as its `(created, id)`, looked up by the caller first.
pub fn page_sql(
    table_name: &str,
    from: &str,
    query: &PageQuery,
    cursor: Option<(Option<i64>, &str)>,
    placeholder: impl Fn(usize) -> String,
    data_column: &str,
) -> Result<(String, Vec<Param>)> {
    let t = table(table_name).ok_or_else(|| StoreError::UnknownTable(table_name.into()))?;
    let mut params: Vec<Param> = Vec::new();
    let next = |param: Param, params: &mut Vec<Param>| {
        params.push(param);
        placeholder(params.len() + 2)
    };
    let mut sql = format!(
        "SELECT id, deleted, {data_column}, version FROM {from} WHERE account_id = {} AND livemode = {}",
        placeholder(1),
        placeholder(2)
    );
    if !query.include_deleted {
        sql.push_str(" AND NOT deleted");
    }
    let typed = |name: &str, value: &str| -> Result<(&'static str, Param)> {
        let column = t.columns.iter().find(|c| c.name == name).ok_or_else(|| {
            StoreError::BadQuery(format!(
                "{table_name} cannot be filtered by `{name}`; its typed columns are: {}",
                t.columns
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let wrong =
            |kind: &str| StoreError::BadQuery(format!("`{name}` takes {kind}, not `{value}`"));
        let param = match column.sql_type {
            ColumnType::Text => Param::Text(value.to_owned()),
            ColumnType::Integer => {
                Param::Integer(value.parse().map_err(|_| wrong("a whole number"))?)
            }
            ColumnType::Boolean => {
                Param::Boolean(value.parse().map_err(|_| wrong("true or false"))?)
            }
            ColumnType::Real => Param::Real(value.parse().map_err(|_| wrong("a number"))?),
        };
        Ok((column.name, param))
    };
    if let Some((name, value)) = &query.exclude {
        let (column, param) = typed(name, value)?;
        let p = next(param, &mut params);
        sql.push_str(&format!(" AND ({column} IS NULL OR {column} <> {p})"));
    }
    for (name, value) in &query.filters {
        let (column, param) = typed(name, value)?;
        let p = next(param, &mut params);
        sql.push_str(&format!(" AND {column} = {p}"));
    }
    if let Some(gte) = query.created_gte {
        let p = next(Param::Integer(gte), &mut params);
        sql.push_str(&format!(" AND created >= {p}"));
    }
    if let Some(lt) = query.created_lt {
        let p = next(Param::Integer(lt), &mut params);
        sql.push_str(&format!(" AND created < {p}"));
    }
    let newer = cursor_id(query).is_some_and(|(_, newer)| newer);
    // Newest first is by `(COALESCE(created, -1), id)` descending (an object without
    // `created`, a payment link, comes last), the key of the `{table}_page` index, so a page
    // with a cursor is one range of that index whatever the table's size.
    if let Some((created, id)) = cursor {
        let c = next(Param::Integer(created.unwrap_or(-1)), &mut params);
        let i = next(Param::Text(id.to_owned()), &mut params);
        // Written so that the first term is a range of the index (a row-value comparison is
        // not used as one, and a deep page then scanned every row before it).
        let (than, or_equal) = if newer { (">", ">=") } else { ("<", "<=") };
        sql.push_str(&format!(
            " AND COALESCE(created, -1) {or_equal} {c} AND (COALESCE(created, -1) {than} {c} OR id {than} {i})"
        ));
    }
    let limit = query.limit.clamp(1, 100) + 1;
    // A filter on an indexed column that picks out few rows (an id: a customer's invoices, a
    // subscription's items) is the index to read: ordered by an expression the page index
    // does not hold, the few rows are read by that index and sorted, instead of the whole table
    // walked newest first until enough match (seconds for a customer with few objects in a
    // table of 300,000). A status is no such filter: most rows match it.
    let selective = query
        .filters
        .iter()
        .any(|(name, _)| name != "status" && t.indexed.contains(&name.as_str()));
    let key = if selective {
        "(COALESCE(created, -1) + 0)"
    } else {
        "COALESCE(created, -1)"
    };
    // Toward newer objects the page is read oldest first (the caller turns it round).
    let order = if newer {
        format!("{key} ASC, id ASC")
    } else {
        format!("{key} DESC, id DESC")
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    Ok((sql, params))
}
